//go:build unix

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/tsfallback/tsfallback/model"
	"github.com/tsfallback/tsfallback/queue"
	"github.com/tsfallback/tsfallback/results"
)

// natsCluster is a JetStream cluster of nats-server processes on loopback.
type natsCluster struct {
	t     testing.TB
	nodes []*natsNode
}

// natsNode is one server of the cluster.
type natsNode struct {
	name                      string
	client, route, monitoring int
	proc                      *proc
}

func (n *natsNode) url() string { return "nats://127.0.0.1:" + strconv.Itoa(n.client) }

// startNATSCluster starts size servers named n1..nSIZE that route to each
// other, each with a store of its own under dir, and waits until they have
// elected a JetStream meta leader.
func startNATSCluster(t testing.TB, dir string, size int) *natsCluster {
	t.Helper()
	nc := &natsCluster{t: t}
	var routes []string
	for i := range size {
		n := &natsNode{name: "n" + strconv.Itoa(i+1), client: freePort(t), route: freePort(t),
			monitoring: freePort(t)}
		nc.nodes = append(nc.nodes, n)
		routes = append(routes, "nats-route://127.0.0.1:"+strconv.Itoa(n.route))
	}
	for _, n := range nc.nodes {
		// A server skips the route to itself, so every node gets the
		// same list.
		args := []string{"-a", "127.0.0.1", "-p", strconv.Itoa(n.client),
			"-m", strconv.Itoa(n.monitoring), "-js", "-sd", filepath.Join(dir, "nats-"+n.name),
			"-n", n.name, "--cluster_name", "tsfb-e2e",
			"--cluster", "nats://127.0.0.1:" + strconv.Itoa(n.route),
			"--routes", strings.Join(routes, ",")}
		n.proc = startProc(t, "nats-"+n.name, bin.nats, args, os.Environ(),
			filepath.Join(dir, "nats-"+n.name+".log"))
	}
	nc.waitLeader()
	return nc
}

// urls is the client URL list the tsfallback processes get.
func (nc *natsCluster) urls() string {
	var u []string
	for _, n := range nc.nodes {
		u = append(u, n.url())
	}
	return strings.Join(u, ",")
}

// jsz is the part of a server's /jsz answer the harness reads.
type jsz struct {
	Meta *struct {
		Leader   string `json:"leader"`
		Size     int    `json:"cluster_size"`
		Replicas []struct {
			Name    string `json:"name"`
			Current bool   `json:"current"`
			Offline bool   `json:"offline"`
		} `json:"replicas"`
	} `json:"meta_cluster"`
}

// jsz fetches the node's JetStream monitoring page.
func (n *natsNode) jsz() (jsz, error) {
	var j jsz
	cl := http.Client{Timeout: time.Second}
	resp, err := cl.Get("http://127.0.0.1:" + strconv.Itoa(n.monitoring) + "/jsz")
	if err != nil {
		return j, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return j, fmt.Errorf("/jsz: status %d", resp.StatusCode)
	}
	err = json.NewDecoder(resp.Body).Decode(&j)
	return j, err
}

// leader returns the meta leader every running node agrees on, or "".
func (nc *natsCluster) leader() string {
	leader := ""
	for _, n := range nc.nodes {
		if n.proc.exitCode() != -2 {
			continue
		}
		j, err := n.jsz()
		if err != nil || j.Meta == nil || j.Meta.Leader == "" || j.Meta.Size != len(nc.nodes) {
			return ""
		}
		if leader != "" && j.Meta.Leader != leader {
			return ""
		}
		leader = j.Meta.Leader
	}
	return leader
}

// waitLeader waits until the running nodes agree on a meta leader and
// JetStream answers through every one of them.
func (nc *natsCluster) waitLeader() {
	nc.t.Helper()
	eventually(nc.t, readyTimeout, "the NATS cluster to elect a meta leader", func() bool {
		return nc.leader() != ""
	})
	for _, n := range nc.nodes {
		if n.proc.exitCode() != -2 {
			continue
		}
		c := &cluster{t: nc.t, natsURL: n.url()}
		c.waitNATS()
	}
}

// node returns the node whose client port is port, or nil.
func (nc *natsCluster) node(port int) *natsNode {
	for _, n := range nc.nodes {
		if n.client == port {
			return n
		}
	}
	return nil
}

// connectedPort reads, from a tsfallback process's log, the client port
// of the server its connection last went to ("nats_ready" at start,
// "nats_reconnected" after a failover); 0 when it says neither.
func connectedPort(p *proc) int {
	f, err := os.Open(p.log)
	if err != nil {
		return 0
	}
	defer f.Close()
	port := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.Contains(line, `"nats_ready"`) && !strings.Contains(line, `"nats_reconnected"`) {
			continue
		}
		var rec struct {
			Server string `json:"server"`
		}
		if json.Unmarshal([]byte(line), &rec) != nil {
			continue
		}
		rest := rec.Server[strings.LastIndex(rec.Server, "/")+1:]
		if _, ps, err := net.SplitHostPort(rest); err == nil {
			if n, err := strconv.Atoi(ps); err == nil {
				port = n
			}
		}
	}
	return port
}

// newClusterOn is newCluster on an existing NATS deployment: urls is the
// server list and replicas the TSFB_NATS_REPLICAS of every process,
// including the test's own connection, which creates the streams first.
func newClusterOn(t testing.TB, cfg clusterConfig, urls string, replicas int) *cluster {
	t.Helper()
	needBinaries(t)
	cfg = cfg.defaulted()
	c := &cluster{t: t, cfg: cfg, dir: t.TempDir(), cbUser: "e2e-callback", cbPass: randHex(), natsURL: urls}
	c.startSim()

	c.cbAddr = "127.0.0.1:" + strconv.Itoa(freePort(t))
	// exec keeps the last of duplicate variables.
	c.env = append(c.childEnv(), "TSFB_NATS_REPLICAS="+strconv.Itoa(replicas))
	// Start the workers, the front and the test's own connection
	// together on a cluster without streams, so that their Ensure calls
	// race to create them as they do in a first roll-out.
	for i := range cfg.Workers {
		c.startWorker(i)
	}
	c.front = startProc(t, "front", bin.tsfallback, []string{"serve", "--roles", "ingester,correlator,sweeper"},
		c.env, filepath.Join(c.dir, "front.log"))
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	bus, err := queue.Open(ctx, queue.Config{URL: urls, Replicas: replicas}, "tsfallback-e2e", zap.NewNop())
	if err != nil {
		t.Fatalf("connecting to the NATS cluster: %v", err)
	}
	t.Cleanup(bus.Close)
	c.bus = bus
	eventually(t, readyTimeout, "the ingester to listen", func() bool {
		conn, err := net.DialTimeout("tcp", c.cbAddr, time.Second)
		if err == nil {
			conn.Close()
		}
		return err == nil
	})
	c.registerCallback(ctx)
	c.waitMembers(cfg.Workers)
	return c
}

// kill ends the node with SIGKILL and waits until it is gone.
func (n *natsNode) kill(t testing.TB) {
	t.Helper()
	if err := n.proc.signal(syscall.SIGKILL); err != nil {
		t.Fatalf("killing %s: %v", n.name, err)
	}
	if !n.proc.wait(stopTimeout) {
		t.Fatalf("%s still running after SIGKILL", n.name)
	}
}

// followDurable is follow on a durable consumer. The harness's follow
// reads through an ordered consumer, which is R1: after a kill -9 the
// cluster goes on placing new R1 consumers on the dead node until it
// declares it gone, and nats.go's ordered consumer retries that without
// end. A durable inherits the stream's replicas, survives the node, and
// picks up after an error where it stopped, so the tally is never reset.
func (c *cluster) followDurable(name string) *tally {
	tl := &tally{completed: map[string]int{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	c.t.Cleanup(func() {
		cancel()
		<-done
	})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			err := results.Read(ctx, c.bus.JS, results.Options{Account: account, Follow: true, Durable: name},
				tl.count)
			if err != nil && ctx.Err() == nil {
				select {
				case <-ctx.Done():
				case <-time.After(200 * time.Millisecond):
				}
			}
		}
	}()
	return tl
}

// readAllDurable is readAll through a fresh durable consumer, for the
// same reason, retried until readyTimeout while the cluster settles.
func (c *cluster) readAllDurable(name string) outcome {
	c.t.Helper()
	deadline := time.Now().Add(readyTimeout)
	for {
		o := outcome{final: map[string]int{}, completed: map[string]int{}, types: map[string]int{}}
		ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
		err := results.Read(ctx, c.bus.JS, results.Options{Account: account, Durable: name},
			func(e model.Event, _ []byte) error {
				o.types[e.Type]++
				switch {
				case model.IsFinalDevice(e.Type) && e.Device != nil:
					o.final[e.JobID+"/"+e.Device.Key()]++
				case e.Type == model.EventJobCompleted:
					o.completed[e.JobID]++
				}
				return nil
			})
		cancel()
		if err == nil {
			return o
		}
		// A read cut short has acknowledged part of the stream: start
		// over with a new name.
		name += "x"
		if time.Now().After(deadline) {
			c.t.Fatalf("reading the results: %v", err)
		}
		time.Sleep(pollEvery)
	}
}

// checkExactlyOnceDurable is checkExactlyOnce over readAllDurable.
func (c *cluster) checkExactlyOnceDurable(jobs []model.Job) outcome {
	c.t.Helper()
	return c.checkOutcome(jobs, c.readAllDurable("e2e-check"))
}
