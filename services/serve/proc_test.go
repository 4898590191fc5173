package serve_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/specd-dev/specd/services"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// specdBinary builds cmd/specd once per test binary run.
func specdBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "specd-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "specd")
		goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
		out, err := exec.Command(goBin, "build", "-o", binPath, "github.com/specd-dev/specd/cmd/specd").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

type proc struct {
	cmd  *exec.Cmd
	addr string
}

func freePort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startDraftProcess runs `specd draft` as a separate process and waits until its health
// check says SERVING.
func startDraftProcess(t *testing.T) *proc {
	return startProcess(t, "draft", "-m", "specd-draft-q8_0")
}

// startProcess runs `specd <role> --listen <free port> args...` and waits until its
// health check says SERVING.
func startProcess(t *testing.T, role string, args ...string) *proc {
	t.Helper()
	return startProcessAt(t, freePort(t), role, args...)
}

// startProcessAt is startProcess listening on addr.
func startProcessAt(t *testing.T, addr, role string, args ...string) *proc {
	t.Helper()
	bin := specdBinary(t)
	p := &proc{addr: addr}
	args = append([]string{role, "--listen", p.addr, "--threads", "1", "--log-format", "text"}, args...)
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stderr = os.Stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		p.cmd.Wait()
	})
	cc, err := services.Dial(p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	hc := healthpb.NewHealthClient(cc)
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		r, err := hc.Check(ctx, &healthpb.HealthCheckRequest{})
		cancel()
		if err == nil && r.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s process never became SERVING: %v", role, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (p *proc) kill(t *testing.T) {
	t.Helper()
	p.signal(t, syscall.SIGKILL)
}

// signal sends sig to the process (SIGSTOP: it hangs until the test's cleanup kills
// it, which SIGKILL does to a stopped process too).
func (p *proc) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
}
