package cli

import (
	"fmt"
	"io"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// LogConfig is the logging part of the configuration.
type LogConfig struct {
	// Level is debug, info, warn or error (default info; the demo's
	// default is warn so that its summary stands out).
	Level string `env:"TSFB_LOG_LEVEL"`
	// Format is json or console (default json).
	Format string `env:"TSFB_LOG_FORMAT, default=json"`
}

// newLogger builds the process logger on w. Sampling is off: the
// per-device audit lines must all be written.
func newLogger(c LogConfig, w io.Writer, defaultLevel string) (*zap.Logger, error) {
	lvl := c.Level
	if lvl == "" {
		lvl = defaultLevel
	}
	level, err := zapcore.ParseLevel(lvl)
	if err != nil {
		return nil, fmt.Errorf("TSFB_LOG_LEVEL: %q, want debug, info, warn or error", lvl)
	}
	encCfg := zap.NewProductionEncoderConfig()
	encCfg.EncodeTime = zapcore.ISO8601TimeEncoder
	var enc zapcore.Encoder
	switch c.Format {
	case "", "json":
		enc = zapcore.NewJSONEncoder(encCfg)
	case "console":
		encCfg.EncodeLevel = zapcore.CapitalLevelEncoder
		enc = zapcore.NewConsoleEncoder(encCfg)
	default:
		return nil, fmt.Errorf("TSFB_LOG_FORMAT: %q, want json or console", c.Format)
	}
	core := zapcore.NewCore(enc, zapcore.Lock(zapcore.AddSync(w)), level)
	return zap.New(core, zap.AddCaller()), nil
}
