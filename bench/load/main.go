// The benchmarks' load client, in Go: many concurrent connections on every core, cheap per
// connection, so that a rate measures the proxy rather than a single-threaded client sharing
// its cores (the Node clients' TLS handshakes alone took most of a core in the inspect bench).
// Built by the benches into .cache/bench/load (`go build`, standard library only).
//
//	load -mode tunnel -proxy 127.0.0.1:P -target A:PORT -concurrency 50 -seconds 4
//	    connect (through a CONNECT proxy, or straight to the target without -proxy), write
//	    "Q\n", wait for the first byte, read to the far end's close (the proxy bench's upstream)
//	load -mode tls -proxy 127.0.0.1:P -target HOST:443 -sni HOST -ca FILE -path /x -concurrency 20 -seconds 3
//	    CONNECT, TLS (SNI, the CA given), GET with Connection: close, read to the end
//	-count N ends after N exchanges (e.g. one bulk transfer: -path /bytes/SIZE -concurrency 1 -count 1)
//
// Prints {"done":N,"failed":F,"bytes":B,"seconds":S,"firstError":"..."} on stdout (bytes: all
// that was read, response heads included).
package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

type options struct {
	mode, proxy, target, sni, path string
	roots                          *x509.CertPool
}

// dial opens a connection to the target, through the proxy's CONNECT when there is one.
func dial(o *options) (net.Conn, error) {
	if o.proxy == "" {
		return net.DialTimeout("tcp", o.target, 5*time.Second)
	}
	conn, err := net.DialTimeout("tcp", o.proxy, 5*time.Second)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(conn, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", o.target, o.target)
	reader := bufio.NewReader(conn)
	status, err := reader.ReadString('\n')
	if err != nil {
		conn.Close()
		return nil, err
	}
	if !strings.HasPrefix(status, "HTTP/1.1 200") && !strings.HasPrefix(status, "HTTP/1.0 200") {
		conn.Close()
		return nil, fmt.Errorf("CONNECT answered %q", strings.TrimSpace(status))
	}
	for {
		line, err := reader.ReadString('\n')
		if err != nil {
			conn.Close()
			return nil, err
		}
		if line == "\r\n" {
			break
		}
	}
	if reader.Buffered() > 0 {
		conn.Close()
		return nil, errors.New("bytes after the CONNECT answer before the client spoke")
	}
	return conn, nil
}

// once makes one exchange of the mode's kind; the bytes it read.
func once(o *options) (int64, error) {
	conn, err := dial(o)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	var stream io.ReadWriter = conn
	if o.mode == "tls" {
		secure := tls.Client(conn, &tls.Config{ServerName: o.sni, RootCAs: o.roots, NextProtos: []string{"http/1.1"}})
		if err := secure.Handshake(); err != nil {
			return 0, err
		}
		stream = secure
		host := o.target[:strings.LastIndex(o.target, ":")]
		if _, err := fmt.Fprintf(stream, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", o.path, host); err != nil {
			return 0, err
		}
	} else if _, err := io.WriteString(stream, "Q\n"); err != nil {
		return 0, err
	}
	n, err := io.Copy(io.Discard, stream)
	if err != nil {
		return n, err
	}
	if n == 0 {
		return 0, errors.New("no answer")
	}
	return n, nil
}

func main() {
	o := &options{}
	flag.StringVar(&o.mode, "mode", "tunnel", "tunnel or tls")
	flag.StringVar(&o.proxy, "proxy", "", "the CONNECT proxy (none: straight to the target)")
	flag.StringVar(&o.target, "target", "", "host:port")
	flag.StringVar(&o.sni, "sni", "", "TLS server name")
	flag.StringVar(&o.path, "path", "/", "request path (tls)")
	caFile := flag.String("ca", "", "PEM file of the CAs to trust (tls)")
	concurrency := flag.Int("concurrency", 50, "connections in flight")
	seconds := flag.Float64("seconds", 4, "how long")
	count := flag.Int64("count", 0, "exchanges in all (0: as many as fit in -seconds)")
	flag.Parse()
	if o.mode == "tls" {
		pem, err := os.ReadFile(*caFile)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		o.roots = x509.NewCertPool()
		if !o.roots.AppendCertsFromPEM(pem) {
			fmt.Fprintln(os.Stderr, "no certificate in", *caFile)
			os.Exit(2)
		}
	}
	var done, failed, bytes, started atomic.Int64
	var firstError atomic.Value
	start := time.Now()
	deadline := start.Add(time.Duration(*seconds * float64(time.Second)))
	var wg sync.WaitGroup
	for i := 0; i < *concurrency; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) && (*count == 0 || started.Add(1) <= *count) {
				n, err := once(o)
				bytes.Add(n)
				if err != nil {
					firstError.CompareAndSwap(nil, err.Error())
					// Bounded: a path that only fails is measured as failing, not retried forever.
					if failed.Add(1) > 1000 {
						return
					}
					continue
				}
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	result := map[string]any{"done": done.Load(), "failed": failed.Load(), "bytes": bytes.Load(), "seconds": time.Since(start).Seconds()}
	if e := firstError.Load(); e != nil {
		result["firstError"] = e
	}
	json.NewEncoder(os.Stdout).Encode(result)
}
