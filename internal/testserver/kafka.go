package testserver

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"
)

// KafkaConfig shapes the cluster Kafka starts. The zero value is one
// plaintext broker without authentication and without topics.
type KafkaConfig struct {
	// Topics are created at start: name → partitions.
	Topics map[string]int
	// Users enables SASL: every client must authenticate as one of them.
	Users []KafkaUser
	// TLS serves TLS with a certificate for 127.0.0.1 signed by a CA made
	// for this server (KafkaServer.CAFile).
	TLS bool
	// ClientCert, with TLS, requires a client certificate signed by that
	// CA; KafkaServer.CertFile and KeyFile hold one.
	ClientCert bool
}

// KafkaUser is one SASL user: Mechanism is PLAIN, SCRAM-SHA-256 or
// SCRAM-SHA-512.
type KafkaUser struct {
	Mechanism, User, Password string
}

// KafkaServer is a Kafka wire-protocol server (franz-go's kfake, built from
// internal/testserver/kfake) on 127.0.0.1:<free port>. Addr is the one seed
// broker; URL is the same. Its topics, records and committed group offsets
// survive Stop/Start (it keeps them in its data directory).
type KafkaServer struct {
	*Server
	// CAFile is the PEM of the CA that signed the server's (and the
	// client's) certificate, with TLS.
	CAFile string
	// CertFile and KeyFile are a client certificate and its key, with
	// ClientCert.
	CertFile, KeyFile string
}

// TLSConfig returns a client TLS configuration trusting CAFile (and
// presenting the client certificate with ClientCert), or nil without TLS.
func (k *KafkaServer) TLSConfig(t testing.TB) *tls.Config {
	t.Helper()
	if k.CAFile == "" {
		return nil
	}
	pemCA, err := os.ReadFile(k.CAFile)
	if err != nil {
		t.Fatalf("testserver: %v", err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pemCA)
	tc := &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
	if k.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(k.CertFile, k.KeyFile)
		if err != nil {
			t.Fatalf("testserver: %v", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc
}

// Kafka starts kfake as configured; the server is stopped by
// t.Cleanup. The binary is built once per test process (go build, from the
// module's own source), so the first call takes a few seconds more.
func Kafka(t testing.TB, cfg KafkaConfig) *KafkaServer {
	t.Helper()
	bin := KafkaBinary(t)
	k := &KafkaServer{}
	var tlsDir string
	if cfg.TLS {
		tlsDir = t.TempDir()
		k.CAFile, k.CertFile, k.KeyFile = writeCerts(t, tlsDir, cfg.ClientCert)
	}
	k.Server = launch(t, func(ports []int) *Server {
		dir := t.TempDir()
		addr := hostPort(ports[0])
		args := []string{"-port", strconv.Itoa(ports[0]), "-data-dir", filepath.Join(dir, "data")}
		names := make([]string, 0, len(cfg.Topics))
		for name := range cfg.Topics {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			args = append(args, "-topic", name+"="+strconv.Itoa(cfg.Topics[name]))
		}
		for _, u := range cfg.Users {
			args = append(args, "-user", u.Mechanism+":"+u.User+":"+u.Password)
		}
		var probeTLS *tls.Config
		if cfg.TLS {
			args = append(args, "-tls-cert", filepath.Join(tlsDir, "server.pem"), "-tls-key", filepath.Join(tlsDir, "server-key.pem"))
			if cfg.ClientCert {
				args = append(args, "-tls-client-ca", k.CAFile)
			}
			probeTLS = k.TLSConfig(t)
		}
		return &Server{
			Addr:  addr,
			URL:   addr,
			bin:   bin,
			args:  args,
			dir:   dir,
			log:   filepath.Join(dir, "kfake.log"),
			ready: func(ctx context.Context) error { return kafkaAPIVersions(ctx, addr, probeTLS) },
		}
	}, 1)
	return k
}

var kfakeBuild struct {
	once sync.Once
	path string
	err  error
}

// KafkaBinary returns the path of the kfake server binary, building it
// (once per process) from internal/testserver/kfake. SUBSOCK_KFAKE names a
// prebuilt one instead.
func KafkaBinary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("SUBSOCK_KFAKE"); p != "" {
		return p
	}
	kfakeBuild.once.Do(func() { kfakeBuild.path, kfakeBuild.err = buildKfake() })
	if kfakeBuild.err != nil {
		t.Fatalf("testserver: build kfake: %v", kfakeBuild.err)
	}
	return kfakeBuild.path
}

// buildKfake builds into a shared directory under a temporary name and
// renames it into place, so concurrent test processes never run or replace
// a half-written binary; Go's build cache makes the rebuild a link.
func buildKfake() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("no caller information")
	}
	root := filepath.Join(filepath.Dir(file), "..", "..")
	dir := filepath.Join(os.TempDir(), "subsock-testbin")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	f, err := os.CreateTemp(dir, "kfake-*.tmp")
	if err != nil {
		return "", err
	}
	tmp := f.Name()
	f.Close()
	defer os.Remove(tmp)
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goBin); err != nil {
		goBin = "go"
	}
	cmd := exec.Command(goBin, "build", "-o", tmp, "./internal/testserver/kfake")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("%v\n%s", err, out)
	}
	final := filepath.Join(dir, "kfake")
	if err := os.Rename(tmp, final); err != nil {
		return "", err
	}
	return final, nil
}

// kafkaAPIVersions is nil once the broker answers an ApiVersions v0
// request (allowed before SASL authentication): hand-encoded, so that
// importing testserver does not link a Kafka client into every test binary.
func kafkaAPIVersions(ctx context.Context, addr string, tc *tls.Config) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(2 * time.Second))
	if tc != nil {
		tconn := tls.Client(conn, tc)
		if err := tconn.HandshakeContext(ctx); err != nil {
			return err
		}
		conn = tconn
	}
	const corr = 7
	clientID := "testserver"
	req := binary.BigEndian.AppendUint32(nil, uint32(2+2+4+2+len(clientID)))
	req = binary.BigEndian.AppendUint16(req, 18) // ApiVersions
	req = binary.BigEndian.AppendUint16(req, 0)  // version 0
	req = binary.BigEndian.AppendUint32(req, corr)
	req = binary.BigEndian.AppendUint16(req, uint16(len(clientID)))
	req = append(req, clientID...)
	if _, err := conn.Write(req); err != nil {
		return err
	}
	var head [10]byte // size, correlation id, error code
	if _, err := io.ReadFull(conn, head[:]); err != nil {
		return err
	}
	if c := binary.BigEndian.Uint32(head[4:]); c != corr {
		return fmt.Errorf("testserver: kafka answered correlation id %d, sent %d", c, corr)
	}
	if code := binary.BigEndian.Uint16(head[8:]); code != 0 {
		return fmt.Errorf("testserver: kafka ApiVersions error code %d", code)
	}
	return nil
}

// writeCerts makes a CA, a server certificate for 127.0.0.1 and localhost
// and a client certificate, all signed by the CA, and returns the CA's and
// the client's files.
func writeCerts(t testing.TB, dir string, client bool) (caFile, certFile, keyFile string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("testserver: %v", err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "subsock test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatalf("testserver: %v", err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	caFile = filepath.Join(dir, "ca.pem")
	writePEM(t, caFile, "CERTIFICATE", caDER)

	leaf := func(name string, serial int64, usage x509.ExtKeyUsage) (string, string) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatalf("testserver: %v", err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			Subject:      pkix.Name{CommonName: name},
			NotBefore:    now.Add(-time.Hour),
			NotAfter:     now.Add(24 * time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{usage},
			DNSNames:     []string{"localhost"},
			IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatalf("testserver: %v", err)
		}
		keyDER, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatalf("testserver: %v", err)
		}
		c, k := filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
		writePEM(t, c, "CERTIFICATE", der)
		writePEM(t, k, "PRIVATE KEY", keyDER)
		return c, k
	}
	leaf("server", 2, x509.ExtKeyUsageServerAuth)
	if client {
		certFile, keyFile = leaf("client", 3, x509.ExtKeyUsageClientAuth)
	}
	return caFile, certFile, keyFile
}

func writePEM(t testing.TB, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatalf("testserver: %v", err)
	}
}
