package testpki

import (
	"bufio"
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
// files (certFile holds the leaf and its chain); it is killed when the test
// ends.
func StartTLSServer(t testing.TB, certFile, keyFile, caFile string) *TLSServer {
	t.Helper()
	return startSServer(t, certFile, keyFile, caFile, "-rev")
}

// StartHTTPSServer is StartTLSServer answering HTTP requests with a status
// page (s_server -www), for clients such as curl.
func StartHTTPSServer(t testing.TB, certFile, keyFile, caFile string) *TLSServer {
	t.Helper()
	return startSServer(t, certFile, keyFile, caFile, "-www")
}

func startSServer(t testing.TB, certFile, keyFile, caFile, mode string) *TLSServer {
	t.Helper()
	for attempt := 0; attempt < 3; attempt++ {
		port := FreePort(t)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		out := &bytes.Buffer{}
		cmd := exec.CommandContext(ctx, OpenSSL(t), "s_server", "-accept", "127.0.0.1:"+strconv.Itoa(port),
			"-cert", certFile, "-cert_chain", certFile, "-key", keyFile, "-CAfile", caFile, "-Verify", "2", "-verify_return_error", mode)
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
// returns nil only if the server echoes it reversed. s_client is stopped as
// soon as the echo arrives, and after 20 seconds at most.
func (s *TLSServer) Dial(t testing.TB, caFile, certFile, keyFile, serverName string) error {
	t.Helper()
	args := []string{"s_client", "-connect", s.Addr, "-CAfile", caFile, "-verify_return_error", "-quiet"}
	if serverName != "" {
		args = append(args, "-servername", serverName, "-verify_hostname", serverName)
	}
	if certFile != "" {
		args = append(args, "-cert", certFile, "-cert_chain", certFile, "-key", keyFile)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, OpenSSL(t), args...)
	cmd.WaitDelay = time.Second
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start openssl s_client: %v", err)
	}
	// Keep stdin open (s_client stops on EOF) until the echo or the end.
	_, _ = stdin.Write([]byte("meshca-ping\n"))
	echoed := false
	var out strings.Builder
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		out.WriteString(sc.Text() + "\n")
		if strings.Contains(sc.Text(), "gnip-achsem") { // "meshca-ping" reversed by s_server -rev
			echoed = true
			cancel()
			break
		}
	}
	stdin.Close()
	_ = cmd.Wait()
	if echoed {
		return nil
	}
	return fmt.Errorf("no echo from the server:\n%s%s", out.String(), stderr.String())
}
