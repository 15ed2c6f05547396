package model

import (
	"fmt"
	"math/rand/v2"
)

// Generators of valid identifiers, for the demo, the simulator and tests.
// Verizon's own examples fail the checks, so test data is made, not copied.

// RandomEID returns a valid 32-digit EID.
func RandomEID(r *rand.Rand) string {
	body := "89049032" + digits(r, 22)
	// Two check digits make the whole number mod 97 equal 1.
	check := 98 - mod97(body+"00")
	return fmt.Sprintf("%s%02d", body, check)
}

// RandomICCID returns a valid 20-digit ICCID.
func RandomICCID(r *rand.Rand) string {
	body := "8914800" + digits(r, 12)
	return body + string(LuhnDigit(body))
}

// RandomIMEI returns a valid 15-digit IMEI.
func RandomIMEI(r *rand.Rand) string {
	body := "35" + digits(r, 12)
	return body + string(LuhnDigit(body))
}

// RandomDevice returns a device with a valid EID, ICCID and IMEI.
func RandomDevice(r *rand.Rand) Device {
	return Device{DeviceIDs: []DeviceID{
		{Kind: KindEID, ID: RandomEID(r)},
		{Kind: KindICCID, ID: RandomICCID(r)},
		{Kind: KindIMEI, ID: RandomIMEI(r)},
	}}
}

func digits(r *rand.Rand, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('0' + r.IntN(10))
	}
	return string(b)
}
