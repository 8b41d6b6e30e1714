package kubetest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// pki holds the files the API server and its clients need, written under
// one directory: a CA, the serving certificate it signs, the service-account
// signing key pair and the static token file.
type pki struct {
	caCert     []byte // PEM, trusted by every client
	caCertPath string
	certPath   string // serving certificate and key
	keyPath    string
	saKeyPath  string // service-account signing key (private, RSA)
	saPubPath  string // and its public half, for token verification
	tokensPath string
	tokens     map[string]string // component name -> bearer token
}

// identities are the users the components and tests authenticate as. All
// are in system:masters: the tier tests Sluice, not Kubernetes RBAC for
// the control plane's own components.
var identities = []string{"admin", "kube-controller-manager", "kube-scheduler", "kwok"}

func newPKI(dir string, serviceIP net.IP) (*pki, error) {
	p := &pki{
		caCertPath: filepath.Join(dir, "ca.crt"),
		certPath:   filepath.Join(dir, "apiserver.crt"),
		keyPath:    filepath.Join(dir, "apiserver.key"),
		saKeyPath:  filepath.Join(dir, "sa.key"),
		saPubPath:  filepath.Join(dir, "sa.pub"),
		tokensPath: filepath.Join(dir, "tokens.csv"),
		tokens:     map[string]string{},
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}

	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "kubetest-ca"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(7 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	p.caCert = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})

	servingKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	servingTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "kube-apiserver"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(7 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), serviceIP},
		DNSNames: []string{"localhost", "kubernetes", "kubernetes.default",
			"kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
	}
	servingDER, err := x509.CreateCertificate(rand.Reader, servingTmpl, caCert, &servingKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	servingKeyDER, err := x509.MarshalECPrivateKey(servingKey)
	if err != nil {
		return nil, err
	}

	saKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	saPubDER, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		return nil, err
	}

	// token,user,uid,"group1,group2": the API server's --token-auth-file.
	var tokens strings.Builder
	for _, id := range identities {
		buf := make([]byte, 24)
		if _, err := rand.Read(buf); err != nil {
			return nil, err
		}
		tok := hex.EncodeToString(buf)
		p.tokens[id] = tok
		fmt.Fprintf(&tokens, "%s,kubetest:%s,kubetest-%s,\"system:masters\"\n", tok, id, id)
	}

	files := []struct {
		path string
		data []byte
	}{
		{p.caCertPath, p.caCert},
		{p.certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: servingDER})},
		{p.keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: servingKeyDER})},
		{p.saKeyPath, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(saKey)})},
		{p.saPubPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: saPubDER})},
		{p.tokensPath, []byte(tokens.String())},
	}
	for _, f := range files {
		if err := os.WriteFile(f.path, f.data, 0o600); err != nil {
			return nil, err
		}
	}
	return p, nil
}
