package sim

import "encoding/json"

// mustJSON encodes values that cannot fail to encode (no channels, no
// funcs, no cycles).
func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic("sim: encoding callback: " + err.Error())
	}
	return b
}
