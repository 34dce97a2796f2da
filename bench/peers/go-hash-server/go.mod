module edge-firmware/bench/go-hash-server

go 1.19
