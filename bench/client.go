package bench

import (
	"bytes"
	"context"
	"net"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"
)

// client is the load generator's HTTP side: fasthttp's HostClient with keep-alive
// connections, one request and response object per worker.
type client struct {
	hc    *fasthttp.HostClient
	key   string
	base  string // http://host
	conns []*conn
}

type conn struct {
	req  *fasthttp.Request
	resp *fasthttp.Response
	buf  []byte
}

// requestTimeout bounds one request; a request that takes longer counts as an error.
const requestTimeout = 10 * time.Second

func newClient(addr, key string, workers int) *client {
	c := &client{key: key, base: "http://" + addr, hc: &fasthttp.HostClient{
		Addr:                addr,
		MaxConns:            workers,
		MaxIdleConnDuration: time.Minute,
		ReadTimeout:         requestTimeout,
		WriteTimeout:        requestTimeout,
		Dial: func(addr string) (net.Conn, error) {
			return fasthttp.DialTimeout(addr, 5*time.Second)
		},
	}}
	c.conns = make([]*conn, workers)
	for i := range c.conns {
		c.conns[i] = &conn{req: fasthttp.AcquireRequest(), resp: fasthttp.AcquireResponse()}
	}
	return c
}

func (c *client) close() {
	for _, cn := range c.conns {
		fasthttp.ReleaseRequest(cn.req)
		fasthttp.ReleaseResponse(cn.resp)
	}
	c.hc.CloseIdleConnections()
}

// post sends body to path as worker w, with an idempotency key when idem is not empty, and
// returns the status and the response body (valid until w's next request).
func (c *client) post(w int, path string, body []byte, idem []byte) (int, []byte, error) {
	cn := c.conns[w]
	cn.req.Reset()
	cn.req.Header.SetMethod(fasthttp.MethodPost)
	cn.buf = append(append(cn.buf[:0], c.base...), path...)
	cn.req.SetRequestURIBytes(cn.buf)
	cn.req.Header.SetContentType("application/json")
	cn.req.Header.Set("X-API-Key", c.key)
	if len(idem) > 0 {
		cn.req.Header.SetBytesV("Idempotency-Key", idem)
	}
	cn.req.SetBodyRaw(body)
	if err := c.hc.DoTimeout(cn.req, cn.resp, requestTimeout); err != nil {
		return 0, nil, err
	}
	return cn.resp.StatusCode(), cn.resp.Body(), nil
}

// holdID pulls "hold_id" out of a hold's JSON without decoding the rest.
func holdID(body []byte) string {
	const field = `"hold_id":"`
	i := bytes.Index(body, []byte(field))
	if i < 0 {
		return ""
	}
	rest := body[i+len(field):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return ""
	}
	return string(rest[:j])
}

// keys hands out idempotency keys unique within a run: "<run>-<worker>-<n>".
type keys struct {
	run string
	n   []int64
	buf [][]byte
}

func newKeys(run string, workers int) *keys {
	return &keys{run: run, n: make([]int64, workers), buf: make([][]byte, workers)}
}

// next returns worker w's next key (valid until w asks again).
func (k *keys) next(w int) []byte {
	k.n[w]++
	b := append(k.buf[w][:0], k.run...)
	b = append(b, '-')
	b = strconv.AppendInt(b, int64(w), 10)
	b = append(b, '-')
	b = strconv.AppendInt(b, k.n[w], 10)
	k.buf[w] = b
	return b
}

// helloServer is the http_hello baseline: a fasthttp handler that answers every request with
// a small JSON body and does nothing else; it is the HTTP ceiling of the machine.
func helloServer(ctx context.Context) (addr string, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &fasthttp.Server{Handler: func(rc *fasthttp.RequestCtx) {
		rc.SetStatusCode(fasthttp.StatusCreated)
		rc.SetContentType("application/json")
		rc.SetBodyString(`{"hold_id":"hello","status":"ACTIVE"}`)
	}, NoDefaultServerHeader: true}
	done := make(chan struct{})
	go func() { _ = srv.Serve(ln); close(done) }()
	return ln.Addr().String(), func() { _ = srv.Shutdown(); <-done }, nil
}
