// vcsim-vmcoreos serves govmomi's VPX simulator model over TLS on a chosen
// address, for vmcoreos's tests and demo. Debian ships govmomi's simulator
// only as source, so this is the smallest main that turns it into a server.
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"flag"
	"fmt"
	"io/ioutil"
	"log"
	"math/big"
	"net"
	"net/url"
	"os"
	"os/signal"
	"strings"
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

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to serve the SDK on")
	certOut := flag.String("cert-out", "", "write the server certificate (PEM) here")
	infoOut := flag.String("info-out", "", "write url=, thumbprint= lines here once serving")
	hosts := flag.Int("hosts", 3, "hosts in the cluster DC0_C0")
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
	model.Service.Listen = &url.URL{Host: *listen}
	server := model.Service.NewServer()
	defer server.Close()

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
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
}
