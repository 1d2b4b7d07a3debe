package testpki

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// OpenSSL is the openssl binary the tests drive; $OPENSSL overrides it.
func OpenSSL(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("OPENSSL"); p != "" {
		return p
	}
	p, err := exec.LookPath("openssl")
	if err != nil {
		t.Fatalf("openssl not found: install it or set $OPENSSL")
	}
	return p
}

// WriteFile writes data to name in dir and returns the path.
func WriteFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// Run runs openssl with args, bounded by timeout, and returns its combined
// output and error.
func Run(t testing.TB, timeout time.Duration, stdin []byte, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, OpenSSL(t), args...)
	cmd.Stdin = bytes.NewReader(stdin)
	cmd.WaitDelay = time.Second
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// Verify runs `openssl verify -CAfile caFile -untrusted untrusted leaf` and
// fails the test unless it reports OK. untrusted may be empty.
func Verify(t testing.TB, caFile, untrusted, leaf string, extra ...string) {
	t.Helper()
	args := append([]string{"verify", "-CAfile", caFile}, extra...)
	if untrusted != "" {
		args = append(args, "-untrusted", untrusted)
	}
	out, err := Run(t, 30*time.Second, nil, append(args, leaf)...)
	if err != nil || !strings.Contains(out, leaf+": OK") {
		t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TLSServer is a running `openssl s_server` that demands a client
// certificate (-Verify) and echoes reversed lines (-rev).
type TLSServer struct {
	Addr   string
	output *bytes.Buffer
}

// StartTLSServer starts openssl s_server on a free port with the given PEM
// files; it is killed when the test ends.
func StartTLSServer(t testing.TB, certFile, keyFile, caFile string) *TLSServer {
	t.Helper()
	for attempt := 0; attempt < 3; attempt++ {
		port := FreePort(t)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		out := &bytes.Buffer{}
		cmd := exec.CommandContext(ctx, OpenSSL(t), "s_server", "-accept", "127.0.0.1:"+strconv.Itoa(port),
			"-cert", certFile, "-key", keyFile, "-CAfile", caFile, "-Verify", "2", "-verify_return_error", "-rev")
		cmd.Stdout, cmd.Stderr = out, out
		cmd.WaitDelay = time.Second
		if err := cmd.Start(); err != nil {
			cancel()
			t.Fatalf("start openssl s_server: %v", err)
		}
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		t.Cleanup(func() { cancel(); <-done })
		addr := "127.0.0.1:" + strconv.Itoa(port)
		deadline := time.Now().Add(15 * time.Second)
		for time.Now().Before(deadline) {
			select {
			case <-done:
				deadline = time.Time{} // exited: port taken or bad files; retry
				continue
			default:
			}
			if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
				c.Close()
				return &TLSServer{Addr: addr, output: out}
			}
			time.Sleep(50 * time.Millisecond)
		}
		cancel()
		<-done
		if attempt == 2 {
			t.Fatalf("openssl s_server did not listen on %s:\n%s", addr, out)
		}
	}
	return nil
}

// Dial connects with openssl s_client, verifying the server against
// caFile, presenting certFile/keyFile when not empty, sends a line and
// returns nil only if the server echoed it reversed.
func (s *TLSServer) Dial(t testing.TB, caFile, certFile, keyFile, serverName string) error {
	t.Helper()
	args := []string{"s_client", "-connect", s.Addr, "-CAfile", caFile, "-verify_return_error", "-quiet"}
	if serverName != "" {
		args = append(args, "-servername", serverName, "-verify_hostname", serverName)
	}
	if certFile != "" {
		args = append(args, "-cert", certFile, "-key", keyFile)
	}
	out, err := Run(t, 20*time.Second, []byte("meshca-ping\n"), args...)
	if strings.Contains(out, "gnip-ahshem") {
		return nil
	}
	return fmt.Errorf("no echo from the server (%v):\n%s", err, out)
}
