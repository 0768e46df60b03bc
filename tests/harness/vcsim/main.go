// vcsim-vmcoreos serves govmomi's VPX simulator model over TLS on a chosen
// address, for vmcoreos's tests and demo. Debian ships govmomi's simulator
// only as source, so this is the smallest main that turns it into a server.
package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"encoding/xml"
	"flag"
	"fmt"
	"io"
	"io/ioutil"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vmware/govmomi/simulator"
)

func selfSigned(host string) (tls.Certificate, []byte) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		log.Fatal(err)
	}
	tmpl := x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "vcsim-vmcoreos"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              []string{"localhost"},
	}
	if ip := net.ParseIP(host); ip != nil {
		tmpl.IPAddresses = []net.IP{ip}
	} else {
		tmpl.DNSNames = append(tmpl.DNSNames, host)
	}
	der, err := x509.CreateCertificate(rand.Reader, &tmpl, &tmpl, &key.PublicKey, key)
	if err != nil {
		log.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		log.Fatal(err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		log.Fatal(err)
	}
	return pair, certPEM
}

// requestStats counts the requests the server answers, by User-Agent: SOAP calls
// (POST /sdk...) by method, everything else (NFC uploads, version discovery) by
// HTTP method and first path segment. Clients tell themselves apart by User-Agent.
// Uploads (PUT/POST to /nfc) are also timed one by one, from the handler's start
// to its return, so that any two clients' throughput is measured the same way.
type requestStats struct {
	mu      sync.Mutex
	dumps   int
	SOAP    map[string]map[string]int
	HTTP    map[string]map[string]int
	Uploads []upload
}

type upload struct {
	Agent   string  `json:"agent"`
	Path    string  `json:"path"`
	Bytes   int64   `json:"bytes"`
	Seconds float64 `json:"seconds"`
}

type countingReader struct {
	io.ReadCloser
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.n += int64(n)
	return n, err
}

func newRequestStats() *requestStats {
	return &requestStats{SOAP: map[string]map[string]int{}, HTTP: map[string]map[string]int{}, Uploads: []upload{}}
}

func (s *requestStats) add(table map[string]map[string]int, agent, key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if table[agent] == nil {
		table[agent] = map[string]int{}
	}
	table[agent][key]++
}

// soapMethod is the name of the first element inside the envelope's Body.
func soapMethod(body []byte) string {
	dec := xml.NewDecoder(bytes.NewReader(body))
	inBody := false
	for {
		tok, err := dec.Token()
		if err != nil {
			return "?"
		}
		if start, ok := tok.(xml.StartElement); ok {
			if inBody {
				return start.Name.Local
			}
			inBody = start.Name.Local == "Body"
		}
	}
}

func (s *requestStats) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		agent := r.Header.Get("User-Agent")
		if r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/sdk") {
			body, err := ioutil.ReadAll(r.Body)
			_ = r.Body.Close()
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			r.Body = ioutil.NopCloser(bytes.NewReader(body))
			s.add(s.SOAP, agent, soapMethod(body))
		} else {
			segment := strings.SplitN(strings.TrimPrefix(r.URL.Path, "/"), "/", 2)[0]
			s.add(s.HTTP, agent, r.Method+" /"+segment)
			if segment == "nfc" && (r.Method == http.MethodPut || r.Method == http.MethodPost) {
				body := &countingReader{ReadCloser: r.Body}
				r.Body = body
				start := time.Now()
				next.ServeHTTP(w, r)
				s.mu.Lock()
				s.Uploads = append(s.Uploads, upload{agent, r.URL.Path, body.n, time.Since(start).Seconds()})
				s.mu.Unlock()
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// write replaces path with the counts so far (a reader never sees half a file).
func (s *requestStats) write(path string) {
	s.mu.Lock()
	s.dumps++
	data, err := json.MarshalIndent(map[string]interface{}{
		"dumps": s.dumps, "soap": s.SOAP, "http": s.HTTP, "uploads": s.Uploads,
	}, "", "  ")
	s.mu.Unlock()
	if err != nil {
		log.Printf("stats: %v", err)
		return
	}
	tmp := path + ".tmp"
	if err := ioutil.WriteFile(tmp, append(data, '\n'), 0o644); err != nil {
		log.Printf("stats: %v", err)
		return
	}
	if err := os.Rename(tmp, path); err != nil {
		log.Printf("stats: %v", err)
	}
}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to serve the SDK on")
	certOut := flag.String("cert-out", "", "write the server certificate (PEM) here")
	infoOut := flag.String("info-out", "", "write url=, thumbprint= lines here once serving")
	hosts := flag.Int("hosts", 3, "hosts in the cluster DC0_C0")
	statsOut := flag.String("stats-out", os.Getenv("VCSIM_STATS_OUT"),
		"count requests by User-Agent and SOAP method; write them here as JSON on SIGUSR1 and at exit [VCSIM_STATS_OUT]")
	username := flag.String("username", "user", "the only user name Login accepts")
	password := flag.String("password", "pass", "the only password Login accepts")
	flag.Parse()

	host, _, err := net.SplitHostPort(*listen)
	if err != nil {
		log.Fatalf("bad -listen %q: %v", *listen, err)
	}

	model := simulator.VPX()
	model.ClusterHost = *hosts
	if err := model.Create(); err != nil {
		log.Fatal(err)
	}
	defer model.Remove()

	pair, certPEM := selfSigned(host)
	model.Service.TLS = &tls.Config{Certificates: []tls.Certificate{pair}}
	// Explicit credentials: with the default ones vcsim accepts any non-empty login,
	// so a wrong password could never be tested.
	model.Service.Listen = &url.URL{Host: *listen, User: url.UserPassword(*username, *password)}
	server := model.Service.NewServer()
	defer server.Close()
	var stats *requestStats
	if *statsOut != "" {
		// NewServer has already started serving, but nobody knows the address until the
		// info file below is written, so swapping the handler here races with no request.
		stats = newRequestStats()
		server.Config.Handler = stats.wrap(server.Config.Handler)
	}

	sum := sha1.Sum(pair.Certificate[0])
	var tp []string
	for _, b := range sum {
		tp = append(tp, fmt.Sprintf("%02X", b))
	}
	if *certOut != "" {
		if err := ioutil.WriteFile(*certOut, certPEM, 0o644); err != nil {
			log.Fatal(err)
		}
	}
	u := *server.URL
	u.User = nil
	info := fmt.Sprintf("url=%s\nthumbprint=%s\n", u.String(), strings.Join(tp, ":"))
	if *infoOut != "" {
		// Written last and renamed into place so a reader never sees half of it.
		tmp := *infoOut + ".tmp"
		if err := ioutil.WriteFile(tmp, []byte(info), 0o644); err != nil {
			log.Fatal(err)
		}
		if err := os.Rename(tmp, *infoOut); err != nil {
			log.Fatal(err)
		}
	}
	fmt.Print(info)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM, syscall.SIGUSR1)
	for s := range sig {
		if stats != nil {
			stats.write(*statsOut)
		}
		if s != syscall.SIGUSR1 {
			return
		}
	}
}
