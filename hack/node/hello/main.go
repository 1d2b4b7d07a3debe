// Command hello is the node smoke test's workload: an HTTP server that is
// ready only once the file named by -file can be read, and serves that file's
// SHA-256 on /file so the test can check what the kubelet mounted without
// the content crossing the network.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	addr := flag.String("addr", ":8080", "listen address")
	file := flag.String("file", "/etc/hello/token", "file that must be readable for /readyz")
	flag.Parse()

	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok\n")) })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if _, err := os.Stat(*file); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/file", func(w http.ResponseWriter, _ *http.Request) {
		b, err := os.ReadFile(*file)
		if err != nil {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
		sum := sha256.Sum256(b)
		w.Write([]byte(hex.EncodeToString(sum[:]) + "\n"))
	})
	srv := &http.Server{Addr: *addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(shutdown)
	}()
	log.Printf("hello: listening on %s, ready when %s is readable", *addr, *file)
	if err := srv.ListenAndServe(); err != http.ErrServerClosed {
		log.Fatal(err)
	}
}
