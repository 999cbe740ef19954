package database

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// errPoolClosed is returned by acquire after close.
var errPoolClosed = errors.New("database: connection pool closed")

// pool is a bounded pool of connections to one database as one user.
// pgxpool would do, but its dependency (puddle) is not in go.mod yet; this
// is the little of it the engine needs. It is safe for concurrent use.
type pool struct {
	cfg         *pgx.ConnConfig
	sem         chan struct{} // one token per open connection in use
	maxIdle     int
	maxLifetime time.Duration // 0: forever

	mu     sync.Mutex // guards following
	idle   []pooled
	closed bool
}

type pooled struct {
	c       *pgx.Conn
	created time.Time
}

// newPool returns a pool of at most maxOpen connections (0: 4, Vault's
// default) keeping at most maxIdle idle ones (0: maxOpen).
func newPool(cfg *pgx.ConnConfig, maxOpen, maxIdle int, maxLifetime time.Duration) *pool {
	if maxOpen <= 0 {
		maxOpen = 4
	}
	if maxIdle <= 0 || maxIdle > maxOpen {
		maxIdle = maxOpen
	}
	return &pool{cfg: cfg, sem: make(chan struct{}, maxOpen), maxIdle: maxIdle, maxLifetime: maxLifetime}
}

// acquire returns an open connection, reusing an idle one or dialing; the
// caller must release it.
func (p *pool) acquire(ctx context.Context) (pooled, error) {
	select {
	case p.sem <- struct{}{}:
	case <-ctx.Done():
		return pooled{}, ctx.Err()
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		<-p.sem
		return pooled{}, errPoolClosed
	}
	for len(p.idle) > 0 {
		pc := p.idle[len(p.idle)-1]
		p.idle = p.idle[:len(p.idle)-1]
		if pc.c.IsClosed() || p.expired(pc) {
			go pc.c.Close(context.Background())
			continue
		}
		p.mu.Unlock()
		return pc, nil
	}
	p.mu.Unlock()
	c, err := pgx.ConnectConfig(ctx, p.cfg)
	if err != nil {
		<-p.sem
		return pooled{}, err
	}
	return pooled{c: c, created: time.Now()}, nil
}

func (p *pool) expired(pc pooled) bool {
	return p.maxLifetime > 0 && time.Since(pc.created) > p.maxLifetime
}

// release returns pc to the pool, or closes it when it is broken, too old,
// beyond maxIdle or the pool is closed.
func (p *pool) release(pc pooled) {
	defer func() { <-p.sem }()
	p.mu.Lock()
	if !p.closed && !pc.c.IsClosed() && !p.expired(pc) && len(p.idle) < p.maxIdle && pc.c.PgConn().TxStatus() == 'I' {
		p.idle = append(p.idle, pc)
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	pc.c.Close(context.Background())
}

// tx runs fn in a transaction on a pooled connection: committed when fn
// returns nil, rolled back otherwise.
func (p *pool) tx(ctx context.Context, fn func(pgx.Tx) error) error {
	pc, err := p.acquire(ctx)
	if err != nil {
		return err
	}
	defer p.release(pc)
	return pgx.BeginFunc(ctx, pc.c, fn)
}

// ping checks that a connection can be opened and used.
func (p *pool) ping(ctx context.Context) error {
	pc, err := p.acquire(ctx)
	if err != nil {
		return err
	}
	defer p.release(pc)
	return pc.c.Ping(ctx)
}

// close closes the idle connections and makes the pool refuse new work;
// connections in use are closed when released. It is idempotent.
func (p *pool) close() {
	p.mu.Lock()
	idle := p.idle
	p.idle, p.closed = nil, true
	p.mu.Unlock()
	for _, pc := range idle {
		pc.c.Close(context.Background())
	}
}

// String never shows the password.
func (p *pool) String() string {
	return fmt.Sprintf("pool(%s@%s:%d/%s)", p.cfg.User, p.cfg.Host, p.cfg.Port, p.cfg.Database)
}
