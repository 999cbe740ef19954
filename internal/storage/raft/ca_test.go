package raft

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"testing"
)

func TestNodeCertVerifiesOnlyAgainstItsCA(t *testing.T) {
	ca, other := newCA(t), newCA(t)
	certPEM, _, err := IssueNodeCert(ca, "node-a")
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(certPEM)
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if cert.Subject.CommonName != "node-a" || len(cert.DNSNames) != 1 || cert.DNSNames[0] != ClusterServerName {
		t.Errorf("node cert names = %q %q, want node-a and %q", cert.Subject.CommonName, cert.DNSNames, ClusterServerName)
	}
	for name, tc := range map[string]struct {
		ca    *CA
		usage x509.ExtKeyUsage
		ok    bool
	}{
		"own CA, as a server":     {ca, x509.ExtKeyUsageServerAuth, true},
		"own CA, as a client":     {ca, x509.ExtKeyUsageClientAuth, true},
		"another CA, as a server": {other, x509.ExtKeyUsageServerAuth, false},
	} {
		t.Run(name, func(t *testing.T) {
			pool := x509.NewCertPool()
			pool.AppendCertsFromPEM(tc.ca.CertPEM())
			_, err := cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: ClusterServerName, KeyUsages: []x509.ExtKeyUsage{tc.usage}})
			if (err == nil) != tc.ok {
				t.Errorf("Verify = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

func TestParseCA(t *testing.T) {
	ca := newCA(t)
	keyPEM, err := ca.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseCA(ca.CertPEM(), keyPEM)
	if err != nil {
		t.Fatalf("ParseCA(saved CA) = %v", err)
	}
	if _, _, err := IssueNodeCert(back, "n"); err != nil {
		t.Errorf("IssueNodeCert with a parsed CA = %v", err)
	}
	otherKey, _ := newCA(t).KeyPEM()
	nodeCert, nodeKey, _ := IssueNodeCert(ca, "n")
	for name, tc := range map[string]struct{ cert, key []byte }{
		"garbage":               {[]byte("x"), []byte("y")},
		"key of another CA":     {ca.CertPEM(), otherKey},
		"node cert is not a CA": {nodeCert, nodeKey},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := ParseCA(tc.cert, tc.key); !errors.Is(err, ErrBadCertificate) {
				t.Errorf("ParseCA = %v, want ErrBadCertificate", err)
			}
		})
	}
	if _, err := NodeTLSConfig(ca.CertPEM(), nodeCert, otherKey); !errors.Is(err, ErrBadCertificate) {
		t.Errorf("NodeTLSConfig(mismatched key) = %v, want ErrBadCertificate", err)
	}
}
