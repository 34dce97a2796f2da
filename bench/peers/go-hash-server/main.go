// The original design's edge server reduced to GET /api/v1/firmware/hash: Go's net/http peer.
package main

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"sync/atomic"
)

func main() {
	var body atomic.Pointer[[]byte] // the answer once the slot is hashed; 503 until then
	go func() {
		slot, err := os.Open(os.Getenv("EDGE_FIRMWARE_SLOT_PATH"))
		if err != nil {
			log.Fatal(err)
		}
		hasher := sha256.New()
		if _, err := io.Copy(hasher, slot); err != nil {
			log.Fatal(err)
		}
		answer := []byte(`{"hash":"` + hex.EncodeToString(hasher.Sum(nil)) + `"}`)
		body.Store(&answer)
	}()

	http.HandleFunc("/api/v1/firmware/hash", func(w http.ResponseWriter, r *http.Request) {
		answer := body.Load()
		if answer == nil {
			w.Header().Set("Retry-After", "2")
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.Write(*answer)
	})
	address := net.JoinHostPort(os.Getenv("EDGE_SERVER_HOST"), os.Getenv("EDGE_SERVER_PORT"))
	log.Fatal(http.ListenAndServe(address, nil))
}
