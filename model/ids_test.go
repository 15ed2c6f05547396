package model

import (
	"errors"
	"math/rand/v2"
	"testing"
)

func TestValidateIdentifiers(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	eid, iccid, imei := RandomEID(r), RandomICCID(r), RandomIMEI(r)
	flip := func(s string) string {
		b := []byte(s)
		b[len(b)-1] = '0' + (b[len(b)-1]-'0'+1)%10
		return string(b)
	}
	tests := []struct {
		name  string
		check func(string) error
		in    string
		want  error
	}{
		{"eid ok", ValidateEID, eid, nil},
		{"eid check", ValidateEID, flip(eid), ErrCheckDigit},
		{"eid short", ValidateEID, eid[:30], ErrLength},
		{"eid letters", ValidateEID, "8904903200000000000000000000000A", ErrNotDigits},
		{"eid empty", ValidateEID, "", ErrEmpty},
		{"iccid ok", ValidateICCID, iccid, nil},
		{"iccid 19 ok", ValidateICCID, "891480000000000000" + string(LuhnDigit("891480000000000000")), nil},
		{"iccid luhn", ValidateICCID, flip(iccid), ErrCheckDigit},
		{"iccid prefix", ValidateICCID, "7" + iccid[1:], ErrPrefix},
		{"iccid long", ValidateICCID, iccid + "1", ErrLength},
		{"iccid space", ValidateICCID, " " + iccid[1:], ErrNotDigits},
		{"imei ok", ValidateIMEI, imei, nil},
		{"imei known", ValidateIMEI, "490154203237518", nil},
		{"imei luhn", ValidateIMEI, flip(imei), ErrCheckDigit},
		{"imei short", ValidateIMEI, imei[:14], ErrLength},
		{"imei exponent", ValidateIMEI, "3.5E+14", ErrNotDigits},
		{"mdn ok", ValidateMDN, "5551234567", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.check(tt.in)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("got %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestRandomIdentifiersAreValid(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 1000 {
		d := RandomDevice(r)
		for _, id := range d.DeviceIDs {
			if err := ValidateDeviceID(id); err != nil {
				t.Fatalf("%s %s: %v", id.Kind, id.ID, err)
			}
		}
	}
}

func TestValidateAccountAndJobID(t *testing.T) {
	for _, s := range []string{"0000123456-00001", "9999999999-99999"} {
		if err := ValidateAccountName(s); err != nil {
			t.Errorf("%q: %v", s, err)
		}
	}
	for _, s := range []string{"", "123456-00001", "0000123456_00001", "0000123456-0001", "000012345a-00001", "0000123456-000011"} {
		if err := ValidateAccountName(s); !errors.Is(err, ErrAccountName) {
			t.Errorf("%q: got %v", s, err)
		}
	}
	for _, s := range []string{"a", "job-1_X", string(make([]byte, 0)) + "Z9"} {
		if err := ValidateJobID(s); err != nil {
			t.Errorf("%q: %v", s, err)
		}
	}
	long := make([]byte, MaxJobIDLen+1)
	for i := range long {
		long[i] = 'a'
	}
	for _, s := range []string{"", "a.b", "a b", "a*", "a>", string(long)} {
		if err := ValidateJobID(s); !errors.Is(err, ErrJobID) {
			t.Errorf("%q: got %v", s, err)
		}
	}
}

func TestDeviceKey(t *testing.T) {
	d := Device{DeviceIDs: []DeviceID{{Kind: "IMEI", ID: "1"}, {Kind: "eid", ID: "2"}}}
	if got, want := d.Key(), "eid-2_imei-1"; got != want {
		t.Fatalf("Key() = %q, want %q", got, want)
	}
}
