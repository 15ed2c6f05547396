package queue

import (
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// EmbeddedReadyTimeout bounds how long an embedded server may take to
// accept connections; a store replayed after a crash can take a while.
const EmbeddedReadyTimeout = 30 * time.Second

// StartEmbedded starts an in-process JetStream server that stores under
// dataDir and listens on listen ("host:port"; port 0 picks a free one). It
// returns the server and the URL clients use. Shut it down with Shutdown
// and WaitForShutdown.
func StartEmbedded(listen, dataDir string) (*server.Server, string, error) {
	host, portText, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, "", fmt.Errorf("TSFB_EMBEDDED_LISTEN: %q: %w", listen, err)
	}
	port, err := strconv.Atoi(portText)
	if err != nil || port < 0 || port > 65535 {
		return nil, "", fmt.Errorf("TSFB_EMBEDDED_LISTEN: %q: bad port", listen)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	store, err := filepath.Abs(dataDir)
	if err != nil {
		return nil, "", fmt.Errorf("TSFB_DATA_DIR: %q: %w", dataDir, err)
	}
	opts := &server.Options{
		ServerName: "tsfallback-embedded",
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   store,
		// The embedding process handles signals itself.
		NoSigs: true,
		NoLog:  true,
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, "", fmt.Errorf("configuring the embedded NATS server: %w", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(EmbeddedReadyTimeout) {
		ns.Shutdown()
		return nil, "", fmt.Errorf("embedded NATS server on %s not ready after %s (is the port in use?)",
			listen, EmbeddedReadyTimeout)
	}
	return ns, ns.ClientURL(), nil
}
