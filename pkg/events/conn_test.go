package events

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"

	"github.com/sluicehq/sluice/pkg/events/embedded"
)

func startConfigured(t *testing.T, configure func(*server.Options)) *embedded.Server {
	t.Helper()
	s, err := embedded.Start(embedded.Options{StoreDir: t.TempDir(), Configure: configure})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	return s
}

// tryConnect connects with cfg and reports whether a published event is
// stored, the proof that the connection is usable for Sluice.
func tryConnect(t *testing.T, cfg ConnConfig) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	c, err := Connect(ctx, cfg, WithLogger(quietLogger()))
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Provision(ctx, BusConfig{}); err != nil {
		return err
	}
	_, err = c.Publish(ctx, cmdSubject("web"), mustEvent(t, TypeRolloutAbort, "default/web", nil))
	return err
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConnectAuthenticationModes(t *testing.T) {
	t.Run("token", func(t *testing.T) {
		s := startConfigured(t, func(o *server.Options) { o.Authorization = "s3cret" })
		if err := tryConnect(t, ConnConfig{URLs: []string{s.ClientURL()}, Token: "s3cret"}); err != nil {
			t.Errorf("right token: %v", err)
		}
		err := tryConnect(t, ConnConfig{URLs: []string{s.ClientURL()}, Token: "wrong"})
		if err == nil || !strings.Contains(err.Error(), "uthorization") {
			t.Errorf("wrong token: err = %v, want an authorization error", err)
		}
	})
	t.Run("user and password", func(t *testing.T) {
		s := startConfigured(t, func(o *server.Options) { o.Username, o.Password = "sluice", "pw" })
		if err := tryConnect(t, ConnConfig{URLs: []string{s.ClientURL()}, User: "sluice", Password: "pw"}); err != nil {
			t.Errorf("right password: %v", err)
		}
		if err := tryConnect(t, ConnConfig{URLs: []string{s.ClientURL()}, User: "sluice", Password: "no"}); err == nil {
			t.Error("wrong password connected")
		}
	})
	t.Run("nkey", func(t *testing.T) {
		kp, _ := nkeys.CreateUser()
		pub, _ := kp.PublicKey()
		seed, _ := kp.Seed()
		s := startConfigured(t, func(o *server.Options) { o.Nkeys = []*server.NkeyUser{{Nkey: pub}} })
		if err := tryConnect(t, ConnConfig{URLs: []string{s.ClientURL()}, NKey: writeFile(t, "user.nk", string(seed))}); err != nil {
			t.Errorf("nkey: %v", err)
		}
		other, _ := nkeys.CreateUser()
		otherSeed, _ := other.Seed()
		if err := tryConnect(t, ConnConfig{URLs: []string{s.ClientURL()}, NKey: writeFile(t, "other.nk", string(otherSeed))}); err == nil {
			t.Error("unknown nkey connected")
		}
	})
	t.Run("creds file", func(t *testing.T) {
		creds, configure := operatorMode(t)
		s := startConfigured(t, configure)
		if err := tryConnect(t, ConnConfig{URLs: []string{s.ClientURL()}, Creds: writeFile(t, "user.creds", creds)}); err != nil {
			t.Errorf("creds: %v", err)
		}
	})
	t.Run("mutual TLS", func(t *testing.T) {
		pki := newPKI(t)
		s := startConfigured(t, func(o *server.Options) {
			tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: pki.serverCert, KeyFile: pki.serverKey, CaFile: pki.ca, Verify: true})
			if err != nil {
				t.Fatal(err)
			}
			o.TLSConfig, o.TLS, o.TLSVerify, o.TLSTimeout = tc, true, true, 2
		})
		url := strings.Replace(s.ClientURL(), "nats://", "tls://", 1)
		if err := tryConnect(t, ConnConfig{URLs: []string{url}, CA: pki.ca, Cert: pki.clientCert, Key: pki.clientKey}); err != nil {
			t.Errorf("mutual TLS: %v", err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_, err := Connect(ctx, ConnConfig{URLs: []string{url}, CA: pki.ca}, WithLogger(quietLogger()))
		if err == nil || !strings.Contains(err.Error(), "certificate required") {
			t.Errorf("TLS without a client certificate to a server that requires one: err = %v, want the server's refusal", err)
		}
		if ctx.Err() != nil {
			t.Errorf("a refused client certificate was retried until the context ended: %v", err)
		}
		if _, err := Connect(ctx, ConnConfig{URLs: []string{url}}, WithLogger(quietLogger())); err == nil || !strings.Contains(err.Error(), "certificate signed by unknown authority") || ctx.Err() != nil {
			t.Errorf("a server certificate that does not verify: err = %v, want it at once", err)
		}
	})
}

func TestConnectRejectsServerWithoutJetStream(t *testing.T) {
	s := startConfigured(t, func(o *server.Options) { o.JetStream = false })
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_, err := Connect(ctx, ConnConfig{URLs: []string{s.ClientURL()}}, WithLogger(quietLogger()))
	if !errors.Is(err, ErrJetStreamNotEnabled) || !strings.Contains(err.Error(), "-js") {
		t.Errorf("err = %v, want ErrJetStreamNotEnabled telling how to enable it", err)
	}
}

func TestConnectGivesUpWhenNoServerAnswers(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	_, err = Connect(ctx, ConnConfig{URLs: []string{"nats://user:pw@" + addr}}, WithLogger(quietLogger()))
	if err == nil || !strings.Contains(err.Error(), "connect to NATS at nats://***@"+addr) {
		t.Errorf("err = %v, want a connect error naming the (redacted) address", err)
	}
	if strings.Contains(err.Error(), "pw") {
		t.Errorf("error leaks the password: %v", err)
	}
}

func TestConnConfigValidate(t *testing.T) {
	cfg := ConnConfig{Token: "t", User: "u", Cert: "/nonexistent/cert.pem", Creds: "/nonexistent/x.creds"}
	cfg.Defaults()
	err := cfg.Validate()
	for _, want := range []string{"not several", "--nats-cert and --nats-key go together", "--nats-creds /nonexistent/x.creds"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v; want it to mention %q", err, want)
		}
	}
	if !errors.Is(err, ErrInvalidConfig) {
		t.Error("not ErrInvalidConfig")
	}
	if err := (ConnConfig{Password: "x"}).Validate(); err == nil || !strings.Contains(err.Error(), "--nats-password needs --nats-user") {
		t.Errorf("password without user: %v", err)
	}
	for _, tt := range []struct{ url, want string }{
		{"bogus url", "not a URL"},
		{"http://127.0.0.1:4222", `scheme "http"`},
		{"nats://", "no host"},
		{"nats://alice:secret@:4222", "nats://***@:4222"},
	} {
		err := (ConnConfig{URLs: []string{tt.url}}).Validate()
		if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "secret") {
			t.Errorf("--nats-url %q: Validate() = %v, want it to mention %q", tt.url, err, tt.want)
		}
	}
	for _, ok := range []string{"127.0.0.1:4222", "tls://nats.example.com", "nats://localhost"} {
		if err := (ConnConfig{URLs: []string{ok}}).Validate(); err != nil {
			t.Errorf("--nats-url %q: %v", ok, err)
		}
	}
}

// operatorMode returns a .creds file's content and a server configuration
// trusting the operator that signed it, with JetStream enabled for the
// user's account.
func operatorMode(t *testing.T) (string, func(*server.Options)) {
	t.Helper()
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	okp, _ := nkeys.CreateOperator()
	opub, _ := okp.PublicKey()
	oc := jwt.NewOperatorClaims(opub)
	sys, _ := nkeys.CreateAccount()
	syspub, _ := sys.PublicKey()
	oc.SystemAccount = syspub
	_, err := oc.Encode(okp)
	must(err)
	sysClaims := jwt.NewAccountClaims(syspub)
	sysJWT, err := sysClaims.Encode(okp)
	must(err)

	akp, _ := nkeys.CreateAccount()
	apub, _ := akp.PublicKey()
	ac := jwt.NewAccountClaims(apub)
	ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
	accJWT, err := ac.Encode(okp)
	must(err)

	ukp, _ := nkeys.CreateUser()
	upub, _ := ukp.PublicKey()
	useed, _ := ukp.Seed()
	uc := jwt.NewUserClaims(upub)
	userJWT, err := uc.Encode(akp)
	must(err)
	creds, err := jwt.FormatUserConfig(userJWT, useed)
	must(err)

	return string(creds), func(o *server.Options) {
		resolver := &server.MemAccResolver{}
		must(resolver.Store(apub, accJWT))
		must(resolver.Store(syspub, sysJWT))
		o.TrustedOperators = []*jwt.OperatorClaims{oc}
		o.AccountResolver = resolver
		o.SystemAccount = syspub
	}
}

type pkiFiles struct{ ca, serverCert, serverKey, clientCert, clientKey string }

// newPKI writes a CA, a server certificate for 127.0.0.1 and a client
// certificate, all signed by the CA.
func newPKI(t *testing.T) pkiFiles {
	t.Helper()
	dir := t.TempDir()
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "sluice test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	leaf := func(name string, serial int64, usage x509.ExtKeyUsage) (string, string) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		keyDER, _ := x509.MarshalECPrivateKey(key)
		return write(name+".pem", "CERTIFICATE", der), write(name+"-key.pem", "EC PRIVATE KEY", keyDER)
	}
	var p pkiFiles
	p.ca = write("ca.pem", "CERTIFICATE", caDER)
	p.serverCert, p.serverKey = leaf("server", 2, x509.ExtKeyUsageServerAuth)
	p.clientCert, p.clientKey = leaf("client", 3, x509.ExtKeyUsageClientAuth)
	return p
}

func TestPublishOutsidePermissionsFailsWithTheReason(t *testing.T) {
	s := startConfigured(t, func(o *server.Options) {
		o.Users = []*server.User{{Username: "viewer", Password: "pw", Permissions: &server.Permissions{
			Publish: &server.SubjectPermission{Allow: []string{"$JS.API.>"}},
		}}}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := Connect(ctx, ConnConfig{URLs: []string{s.ClientURL()}, User: "viewer", Password: "pw"}, WithLogger(quietLogger()), WithPublishTimeout(300*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Provision(ctx, BusConfig{}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = c.Publish(ctx, cmdSubject("web"), mustEvent(t, TypeRolloutAbort, "default/web", nil))
	if !errors.Is(err, ErrPublish) || !strings.Contains(err.Error(), "not permitted to publish to sluice.cmd.default.web") {
		t.Fatalf("err = %v, want ErrPublish naming the refused subject", err)
	}
	if ctx.Err() != nil {
		t.Errorf("publish retried until the context ended (%s) instead of failing on the refusal", time.Since(start))
	}
}
