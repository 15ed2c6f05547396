package callback

import (
	"encoding/json"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/tsfallback/tsfallback/model"
	"github.com/tsfallback/tsfallback/queue"
	"github.com/tsfallback/tsfallback/queue/queuetest"
)

const (
	testUser    = "cb-user"
	testPass    = "cb-secret-pass"
	testAccount = "0000123456-00001"
)

func testConfig() Config {
	return Config{
		Username:      testUser,
		Password:      testPass,
		UnmatchedWait: 300 * time.Millisecond,
	}.Defaulted()
}

func streamMsgs(t testing.TB, bus *queue.Bus, name string) int {
	return int(queuetest.Count(t, bus, name))
}

// callbackBody is the documented shape, with the test credentials.
func callbackBody(requestID string, d model.Device, status string) []byte {
	b := model.CallbackBody{
		RequestID:            requestID,
		DeviceIDs:            d.DeviceIDs,
		Status:               status,
		CallbackCount:        1,
		MaxCallbackThreshold: 4,
		Username:             testUser,
		Password:             testPass,
	}
	if status == model.StatusFailed {
		b.FaultResponse = &model.FaultResponse{FaultCode: "SVC0001", FaultString: "device not eligible"}
	}
	data, _ := json.Marshal(b)
	return data
}

func devices(seed uint64, n int) []model.Device {
	r := rand.New(rand.NewPCG(seed, 99))
	out := make([]model.Device, n)
	for i := range out {
		out[i] = model.RandomDevice(r)
	}
	return out
}
