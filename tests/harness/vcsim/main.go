// vcsim-vmcoreos serves govmomi's VPX simulator model over TLS on a chosen
// address, for vmcoreos's tests and demo. Debian ships govmomi's simulator
// only as source, so this is the smallest main that turns it into a server.
package main

import (
	"bytes"
	"context"
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
	"net/http/httptest"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/vmware/govmomi"
	"github.com/vmware/govmomi/object"
	pbmsim "github.com/vmware/govmomi/pbm/simulator"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/view"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/types"
)

func selfSigned(host, name string) (tls.Certificate, []byte) {
	return selfSignedUntil(host, name, time.Now().Add(24*time.Hour))
}

// selfSignedUntil: a certificate valid from a day before notAfter (or an hour ago) until notAfter.
func selfSignedUntil(host, name string, notAfter time.Time) (tls.Certificate, []byte) {
	notBefore := time.Now().Add(-time.Hour)
	if notAfter.Before(notBefore) {
		notBefore = notAfter.Add(-24 * time.Hour)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		log.Fatal(err)
	}
	tmpl := x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
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

func isSOAP(r *http.Request) bool {
	return r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/sdk")
}

// readBody reads the request's body and puts it back for the next handler
// (false: it could not be read, and the client was told).
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	body, err := ioutil.ReadAll(r.Body)
	_ = r.Body.Close()
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return nil, false
	}
	r.Body = ioutil.NopCloser(bytes.NewReader(body))
	return body, true
}

func (s *requestStats) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		agent := r.Header.Get("User-Agent")
		if isSOAP(r) {
			body, ok := readBody(w, r)
			if !ok {
				return
			}
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
	datastores := flag.Int("datastores", 1, "datastores LocalDS_0.. mounted on every host")
	statsOut := flag.String("stats-out", os.Getenv("VCSIM_STATS_OUT"),
		"count requests by User-Agent and SOAP method; write them here as JSON on SIGUSR1 and at exit [VCSIM_STATS_OUT]")
	username := flag.String("username", "user", "the only user name Login accepts")
	password := flag.String("password", "pass", "the only password Login accepts")
	strict := flag.Bool("strict", false,
		"behave as a real vCenter 7/8 with ESXi hosts where the simulator is lenient: separate NFC host, DRS off, name and memory limits, thin disks, a twin port group")
	esx := flag.Bool("esx", false, "serve a standalone ESXi (apiType HostAgent) instead of a vCenter")
	nfcListen := flag.String("nfc-listen", "", "with -strict: address of the \"ESXi host\" NFC listener (default: the -listen host, any port)")
	nfcAdvertise := flag.String("nfc-advertise", "",
		"with -strict: the host:port leases name for NFC (default: the NFC listener's), e.g. a fault proxy in front of it")
	nfcCertOut := flag.String("nfc-cert-out", "", "with -strict: write the NFC host's certificate (PEM) here")
	nfcCertExpired := flag.Bool("nfc-cert-expired", false, "with -strict: the NFC host's certificate expired an hour ago")
	taskDelay := flag.Duration("task-delay", 0,
		"with -strict: clone tasks run this long in the background, cancelable, and register the VM only at the end")
	taskProgressSteps := flag.Int("task-progress-steps", 0,
		"with -task-delay: a delayed task reports info.progress in this many even steps over the delay (0: none)")
	destroyDelay := flag.Duration("destroy-delay", 0,
		"with -strict: Destroy_Task runs this long in the background, not cancelable, before the VM goes")
	drs := flag.Bool("drs", false, "with -strict: leave DRS on in every cluster (strict turns it off)")
	leaseTimeout := flag.Duration("lease-timeout", 0,
		"with -strict: an NFC lease without HttpNfcLeaseProgress for this long fails (vCenter: 300s; 0: never)")
	sessionIdle := flag.Duration("session-idle", 0, "sessions idle longer than this become NotAuthenticated (0: never)")
	dropAnswer := flag.String("drop-answer", "",
		"METHOD[:N]: carry out the Nth (default first) SOAP call of METHOD, then reset the connection instead of answering, once")
	deny := flag.String("deny-privilege", "",
		"comma-separated privilege IDs HasPrivilegeOnEntities reports as not granted, e.g. VirtualMachine.Config.AdvancedConfig")
	clonePowerOn := flag.String("clone-power-on", "spec",
		"with -strict: \"spec\" powers a clone on when its spec says powerOn, \"always\" powers every clone on, both in a task of its own after the clone task, as vCenter does")
	powerOnDelay := flag.Duration("power-on-delay", 300*time.Millisecond,
		"with -strict: how long that power-on task runs; a PowerOnVM_Task meanwhile fails with InvalidPowerState")
	dsFree := flag.Int64("datastore-free", 0, "with -strict: every datastore has this many bytes free (0: as the simulator says)")
	dsType := flag.String("datastore-type", "", "with -strict: every datastore's summary.type, e.g. vsan")
	vsanFTT := flag.Int("vsan-ftt", 1,
		"hostFailuresToTolerate of the vSAN Default Storage Policy PBM names for a vSAN datastore (0: PBM names none)")
	dsThick := flag.Bool("datastore-thick", false, "with -strict: no datastore has thin provisioning")
	flag.Parse()
	pbmsim.VsanFTT = int32(*vsanFTT)
	if *clonePowerOn != "spec" && *clonePowerOn != "always" {
		log.Fatalf("bad -clone-power-on %q: want spec or always", *clonePowerOn)
	}

	host, _, err := net.SplitHostPort(*listen)
	if err != nil {
		log.Fatalf("bad -listen %q: %v", *listen, err)
	}

	model := simulator.VPX()
	model.ClusterHost = *hosts
	model.Datastore = *datastores
	if *esx {
		model = simulator.ESX()
	}
	if err := model.Create(); err != nil {
		log.Fatal(err)
	}
	defer model.Remove()
	if !*esx {
		// Every vCenter has its own instanceUuid. Upstream draws one into a copy of the service
		// content (service_instance.go), so every simulator says dbed6e0c-…, and what a client
		// records per vCenter would carry over from one simulator to the next.
		si := simulator.Map.Get(vim25.ServiceInstance).(*simulator.ServiceInstance)
		si.Content.About.InstanceUuid = uuid.New().String()
	}
	simulator.SessionIdleTimeout = *sessionIdle
	var nfc *nfcHost
	if *strict {
		simulator.StrictSetup(*drs)
		simulator.Strict.Enabled = true
		simulator.Strict.TaskDelay = *taskDelay
		simulator.Strict.TaskProgressSteps = *taskProgressSteps
		simulator.Strict.DestroyDelay = *destroyDelay
		simulator.Strict.LeaseTimeout = *leaseTimeout
		simulator.StrictPower.CloneAlways = *clonePowerOn == "always"
		simulator.StrictPower.Delay = *powerOnDelay
		simulator.StrictDatastores(*dsFree, *dsType, *dsThick)
		addr := *nfcListen
		if addr == "" {
			addr = net.JoinHostPort(host, "0")
		}
		nfc = startNfcHost(addr, *nfcCertOut, *nfcCertExpired)
		defer nfc.server.Close()
		simulator.Strict.NfcHost = nfc.addr
		if *nfcAdvertise != "" {
			simulator.Strict.NfcHost = *nfcAdvertise
		}
		simulator.Strict.NfcThumbprint = nfc.thumbprint
	}

	pair, certPEM := selfSigned(host, "vcsim-vmcoreos")
	model.Service.TLS = &tls.Config{Certificates: []tls.Certificate{pair}}
	model.Service.RegisterEndpoints = true // PBM (/pbm/sdk), the one endpoint package imported
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
	if *dropAnswer != "" {
		server.Config.Handler = dropAnswerTo(*dropAnswer, server.Config.Handler)
	}
	if nfc != nil {
		if stats != nil {
			nfc.server.Handler = stats.wrap(nfc.server.Handler)
		}
		go func() { _ = nfc.server.ServeTLS(nfc.listener, "", "") }()
		server.Config.Handler = withoutNFC(server.Config.Handler)
		if !*esx {
			if err := addTwinPortgroup(server.URL); err != nil {
				log.Fatalf("strict: adding the twin port group: %v", err)
			}
		}
	}
	// Denied only now: the bed's own setup above (the twin port group) is not the tested user's.
	simulator.SetDeniedPrivileges(*deny)
	if *certOut != "" {
		if err := ioutil.WriteFile(*certOut, certPEM, 0o644); err != nil {
			log.Fatal(err)
		}
	}
	u := *server.URL
	u.User = nil
	info := fmt.Sprintf("url=%s\nthumbprint=%s\n", u.String(), thumbprint(pair))
	if nfc != nil {
		info += fmt.Sprintf("nfc_host=%s\nnfc_listen=%s\nnfc_thumbprint=%s\n",
			simulator.Strict.NfcHost, nfc.addr, nfc.thumbprint)
	}
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
			// Exit now: the deferred server.Close() would wait for every request in flight, and
			// a guest simulator stopped mid-WaitForUpdatesEx leaves one running for its maxWait.
			// The model's temp files are all a dying process owes.
			model.Remove()
			os.Exit(0)
		}
	}
}

// thumbprint is the certificate's SHA-1 as vSphere writes it: colon-separated upper-case hex.
func thumbprint(pair tls.Certificate) string {
	sum := sha1.Sum(pair.Certificate[0])
	var tp []string
	for _, b := range sum {
		tp = append(tp, fmt.Sprintf("%02X", b))
	}
	return strings.Join(tp, ":")
}

// nfcHost plays the ESXi host an NFC lease points at: its own listener and
// its own self-signed certificate, not the vCenter's.
type nfcHost struct {
	listener   net.Listener
	server     *http.Server
	addr       string
	thumbprint string
}

func startNfcHost(addr, certOut string, expired bool) *nfcHost {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		log.Fatalf("bad -nfc-listen %q: %v", addr, err)
	}
	notAfter := time.Now().Add(24 * time.Hour)
	if expired {
		notAfter = time.Now().Add(-time.Hour) // expired an hour ago
	}
	pair, certPEM := selfSignedUntil(host, "esxi-host-vmcoreos", notAfter)
	if certOut != "" {
		if err := ioutil.WriteFile(certOut, certPEM, 0o644); err != nil {
			log.Fatal(err)
		}
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/nfc/", simulator.ServeNFC)
	srv := &http.Server{Handler: mux, TLSConfig: &tls.Config{Certificates: []tls.Certificate{pair}}}
	return &nfcHost{listener: l, server: srv, addr: l.Addr().String(), thumbprint: thumbprint(pair)}
}

// withoutNFC: a real vCenter does not serve the hosts' NFC itself.
func withoutNFC(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/nfc/") {
			http.NotFound(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// addTwinPortgroup adds a second distributed switch, in a network folder
// "lab2", with a port group named like the first switch's (DC0_DVPG0):
// vCenter allows one name in two folders, so a name alone can be ambiguous.
func addTwinPortgroup(u *url.URL) error {
	ctx := context.Background()
	c, err := govmomi.NewClient(ctx, u, true)
	if err != nil {
		return err
	}
	defer func() { _ = c.Logout(ctx) }()
	dcs, err := view.NewManager(c.Client).CreateContainerView(ctx, c.ServiceContent.RootFolder, []string{"Datacenter", "HostSystem"}, true)
	if err != nil {
		return err
	}
	refs, err := dcs.Find(ctx, []string{"Datacenter"}, nil)
	if err != nil || len(refs) == 0 {
		return fmt.Errorf("no datacenter: %v", err)
	}
	folders, err := object.NewDatacenter(c.Client, refs[0]).Folders(ctx)
	if err != nil {
		return err
	}
	hostRefs, err := dcs.Find(ctx, []string{"HostSystem"}, nil)
	if err != nil {
		return err
	}
	sub, err := folders.NetworkFolder.CreateFolder(ctx, "lab2")
	if err != nil {
		return err
	}
	var spec types.DVSCreateSpec
	spec.ConfigSpec = &types.VMwareDVSConfigSpec{}
	spec.ConfigSpec.GetDVSConfigSpec().Name = "DVS1"
	task, err := sub.CreateDVS(ctx, spec)
	if err != nil {
		return err
	}
	info, err := task.WaitForResult(ctx, nil)
	if err != nil {
		return err
	}
	dvs := object.NewDistributedVirtualSwitch(c.Client, info.Result.(types.ManagedObjectReference))
	task, err = dvs.AddPortgroup(ctx, []types.DVPortgroupConfigSpec{{Name: "DC0_DVPG0"}})
	if err != nil {
		return err
	}
	if err := task.Wait(ctx); err != nil {
		return err
	}
	// Hosts join after the port group exists, so they see it (as in the simulator's model).
	config := &types.DVSConfigSpec{}
	for _, h := range hostRefs {
		config.Host = append(config.Host,
			types.DistributedVirtualSwitchHostMemberConfigSpec{Operation: string(types.ConfigSpecOperationAdd), Host: h})
	}
	task, err = dvs.Reconfigure(ctx, config)
	if err != nil {
		return err
	}
	return task.Wait(ctx)
}

// dropAnswerTo: the Nth SOAP call of one method is carried out, but its
// answer never arrives: the connection is reset instead (RST, no bytes), once.
// What a client sees when the network breaks after vCenter took the request;
// over TLS a proxy cannot tell which request that is, so the server does it.
func dropAnswerTo(spec string, next http.Handler) http.Handler {
	method, nth := spec, 1
	if i := strings.LastIndex(spec, ":"); i >= 0 {
		n, err := strconv.Atoi(spec[i+1:])
		if err != nil || n < 1 {
			log.Fatalf("bad -drop-answer %q: want METHOD[:N], N >= 1", spec)
		}
		method, nth = spec[:i], n
	}
	var mu sync.Mutex
	seen := 0
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !isSOAP(r) {
			next.ServeHTTP(w, r)
			return
		}
		body, ok := readBody(w, r)
		if !ok {
			return
		}
		drop := false
		if soapMethod(body) == method {
			mu.Lock()
			seen++
			drop = seen == nth
			mu.Unlock()
		}
		if !drop {
			next.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(httptest.NewRecorder(), r)
		conn, _, err := w.(http.Hijacker).Hijack()
		if err != nil {
			log.Printf("drop-answer: %v", err)
			return
		}
		// The TCP socket itself, reset: closing the TLS layer would send close_notify first.
		raw := conn
		if tc, ok := conn.(*tls.Conn); ok {
			raw = tc.NetConn()
		}
		if tcp, ok := raw.(*net.TCPConn); ok {
			_ = tcp.SetLinger(0)
		}
		_ = raw.Close()
	})
}
