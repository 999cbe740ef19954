package raft

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"time"
)

// ClusterServerName is the DNS name every node certificate carries and every
// node expects of its peers. Peers are identified by holding a certificate
// from the cluster's own CA, not by their network address.
const ClusterServerName = "coffer-cluster"

// certLifetime is the validity of the cluster CA and of node certificates.
const certLifetime = 10 * 365 * 24 * time.Hour

// ErrBadCertificate is returned when PEM input is not the certificate or
// key expected.
var ErrBadCertificate = errors.New("raft: bad certificate or key")

// CA is the cluster's own certificate authority. The core keeps it (CertPEM
// and KeyPEM) in the barrier, and issues each joining node a certificate once
// the node has proved it holds the unseal keys.
type CA struct {
	cert    *x509.Certificate
	key     *ecdsa.PrivateKey
	certPEM []byte
}

// NewClusterCA creates a new ECDSA P-256 cluster CA from crypto/rand.
func NewClusterCA() (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("raft: cluster CA key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "Coffer cluster CA"},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(certLifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("raft: cluster CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("raft: cluster CA certificate: %w", err)
	}
	return &CA{cert: cert, key: key, certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}, nil
}

// ParseCA loads a CA saved with CertPEM and KeyPEM. It returns
// ErrBadCertificate if they are not a CA certificate and its private key.
func ParseCA(certPEM, keyPEM []byte) (*CA, error) {
	cert, err := parseCert(certPEM)
	if err != nil {
		return nil, err
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil || kb.Type != "EC PRIVATE KEY" {
		return nil, fmt.Errorf("raft: CA key: not an EC PRIVATE KEY PEM block: %w", ErrBadCertificate)
	}
	key, err := x509.ParseECPrivateKey(kb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("raft: CA key: %w", ErrBadCertificate)
	}
	if !cert.IsCA || !key.PublicKey.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("raft: CA: certificate is not a CA or does not match the key: %w", ErrBadCertificate)
	}
	return &CA{cert: cert, key: key, certPEM: certPEM}, nil
}

// CertPEM returns the CA certificate, which every node needs to trust its
// peers.
func (ca *CA) CertPEM() []byte { return append([]byte(nil), ca.certPEM...) }

// KeyPEM returns the CA's private key. It is a secret: store it only in the
// barrier.
func (ca *CA) KeyPEM() ([]byte, error) {
	der, err := x509.MarshalECPrivateKey(ca.key)
	if err != nil {
		return nil, fmt.Errorf("raft: CA key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), nil
}

// IssueNodeCert issues a certificate for nodeID, valid for both ends of a
// cluster connection (server and client authentication), with a new ECDSA
// P-256 key. It returns the certificate and key as PEM.
func IssueNodeCert(ca *CA, nodeID string) (certPEM, keyPEM []byte, err error) {
	if ca == nil || nodeID == "" {
		return nil, nil, errors.New("raft: IssueNodeCert needs a CA and a node ID")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("raft: node key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: nodeID},
		DNSNames:     []string{ClusterServerName},
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     now.Add(certLifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, nil, fmt.Errorf("raft: node certificate: %w", err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("raft: node key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), nil
}

// NodeTLSConfig builds the Config.TLS of a node from the cluster CA
// certificate and the node's certificate and key (all PEM): TLS 1.3 only,
// peers must present a certificate from the same CA, in both directions.
func NodeTLSConfig(caCertPEM, certPEM, keyPEM []byte) (*tls.Config, error) {
	caCert, err := parseCert(caCertPEM)
	if err != nil {
		return nil, err
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("raft: node certificate: %w", ErrBadCertificate)
	}
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{pair},
		RootCAs:      pool,
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ServerName:   ClusterServerName,
	}, nil
}

func parseCert(certPEM []byte) (*x509.Certificate, error) {
	b, _ := pem.Decode(certPEM)
	if b == nil || b.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("raft: not a CERTIFICATE PEM block: %w", ErrBadCertificate)
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("raft: certificate: %w", ErrBadCertificate)
	}
	return c, nil
}

func newSerial() (*big.Int, error) {
	s, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("raft: certificate serial: %w", err)
	}
	return s.Add(s, big.NewInt(1)), nil
}
