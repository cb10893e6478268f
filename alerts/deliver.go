package alerts

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/flashhold/flashhold/internal/loop"
)

// Signature headers. A receiver verifies a delivery by computing
// hex(HMAC-SHA256(secret, timestamp + "." + body)) and comparing it with the v1 value of
// X-Flashhold-Signature ("v1=<hex>"); X-Flashhold-Event-Id is the same on every retry of an
// alert, so receivers can drop duplicates.
const (
	HeaderSignature = "X-Flashhold-Signature"
	HeaderTimestamp = "X-Flashhold-Timestamp"
	HeaderEventID   = "X-Flashhold-Event-Id"
	HeaderEventType = "X-Flashhold-Event-Type"
)

// Sign returns the signature header value of body sent at timestamp (unix seconds).
func Sign(secret string, timestamp int64, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(strconv.FormatInt(timestamp, 10) + "."))
	m.Write(body)
	return "v1=" + hex.EncodeToString(m.Sum(nil))
}

// Verify checks a delivery's signature (constant time).
func Verify(secret, timestamp string, body []byte, signature string) bool {
	ts, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return false
	}
	return hmac.Equal([]byte(Sign(secret, ts, body)), []byte(signature))
}

// Deliverer posts queued alerts to their subscriptions: at least once, with capped exponential
// backoff and jitter between attempts, dead-lettered after MaxAttempts.
type Deliverer struct {
	store  *Store
	cfg    Config
	log    zerolog.Logger
	client *http.Client
	result *prometheus.CounterVec
}

// NewDeliverer builds a deliverer whose HTTP client dials only what the policy allows.
func NewDeliverer(store *Store, cfg Config, log zerolog.Logger) *Deliverer {
	result := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "flashhold_webhook_deliveries_total",
		Help: "Webhook delivery attempts by result: delivered, retried, dead."}, []string{"result"})
	// Every result exists from the start, so rate() sees the first dead letter.
	for _, r := range []string{"delivered", "retried", "dead"} {
		result.WithLabelValues(r)
	}
	tr := &http.Transport{DialContext: store.policy.DialContext, MaxIdleConnsPerHost: 4, IdleConnTimeout: 30 * time.Second}
	return &Deliverer{store: store, cfg: cfg, log: log,
		client: &http.Client{Transport: tr, Timeout: cfg.Timeout,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		result: result}
}

// Register adds the deliverer's metrics to reg.
func (d *Deliverer) Register(reg prometheus.Registerer) error { return reg.Register(d.result) }

// Run delivers until ctx ends.
func (d *Deliverer) Run(ctx context.Context) error {
	return loop.Run(ctx, d.cfg.Interval, d.cfg.Interval, func(ctx context.Context) error {
		_, err := d.RunOnce(ctx)
		return err
	}, func(err error) { d.log.Warn().Err(err).Msg("webhook pass failed") })
}

type attempt struct {
	id       int64
	eventID  string
	typ      string
	payload  []byte
	attempts int
	url      string
	secret   string
}

// RunOnce claims the deliveries that are due (several deliverers may run: a claimed delivery
// is hidden from the others for twice the timeout), posts them, and records each outcome.
// It returns how many were attempted.
func (d *Deliverer) RunOnce(ctx context.Context) (int, error) {
	rows, err := d.store.pool.Query(ctx, `
		WITH due AS (
		    SELECT id FROM webhook_deliveries
		     WHERE status = 'pending' AND next_attempt_at <= now()
		     ORDER BY id LIMIT 100 FOR UPDATE SKIP LOCKED)
		UPDATE webhook_deliveries d SET next_attempt_at = now() + $1::bigint * interval '1 millisecond'
		  FROM due, webhook_subscriptions s
		 WHERE d.id = due.id AND s.id = d.subscription_id
		RETURNING d.id, d.event_id, d.payload->>'type', d.payload::text, d.attempts, s.callback_url, s.secret`,
		(2 * d.cfg.Timeout).Milliseconds())
	if err != nil {
		return 0, fmt.Errorf("claim deliveries: %w", err)
	}
	var due []attempt
	for rows.Next() {
		var a attempt
		var payload string
		if err := rows.Scan(&a.id, &a.eventID, &a.typ, &payload, &a.attempts, &a.url, &a.secret); err != nil {
			rows.Close()
			return 0, err
		}
		a.payload = []byte(payload)
		due = append(due, a)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for _, a := range due {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			d.finish(ctx, a, d.post(ctx, a))
		}()
	}
	wg.Wait()
	return len(due), nil
}

func (d *Deliverer) post(ctx context.Context, a attempt) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.url, bytes.NewReader(a.payload))
	if err != nil {
		return err
	}
	ts := time.Now().Unix()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "flashhold-webhooks/1")
	req.Header.Set(HeaderEventID, a.eventID)
	req.Header.Set(HeaderEventType, a.typ)
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
	req.Header.Set(HeaderSignature, Sign(a.secret, ts, a.payload))
	resp, err := d.client.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("receiver answered %d", resp.StatusCode)
	}
	return nil
}

// backoff is base·2^(attempts-1), capped, with ±20% jitter.
func (d *Deliverer) backoff(attempts int) time.Duration {
	b := d.cfg.BackoffBase << min(attempts-1, 30)
	if b <= 0 || b > d.cfg.BackoffMax {
		b = d.cfg.BackoffMax
	}
	return time.Duration(float64(b) * (0.8 + 0.4*rand.Float64()))
}

func (d *Deliverer) finish(ctx context.Context, a attempt, sendErr error) {
	ctx = context.WithoutCancel(ctx)
	n := a.attempts + 1
	var err error
	switch {
	case sendErr == nil:
		_, err = d.store.pool.Exec(ctx, `UPDATE webhook_deliveries SET status = 'delivered', attempts = $2, delivered_at = now(), last_error = '' WHERE id = $1`, a.id, n)
		d.result.WithLabelValues("delivered").Inc()
	case n >= d.cfg.MaxAttempts:
		_, err = d.store.pool.Exec(ctx, `UPDATE webhook_deliveries SET status = 'dead', attempts = $2, last_error = $3 WHERE id = $1`, a.id, n, sendErr.Error())
		d.result.WithLabelValues("dead").Inc()
		d.log.Warn().Str("event_id", a.eventID).Str("url", a.url).Int("attempts", n).Err(sendErr).Msg("webhook dead-lettered")
	default:
		_, err = d.store.pool.Exec(ctx, `UPDATE webhook_deliveries SET attempts = $2, last_error = $3, next_attempt_at = now() + $4::bigint * interval '1 millisecond' WHERE id = $1`,
			a.id, n, sendErr.Error(), d.backoff(n).Milliseconds())
		d.result.WithLabelValues("retried").Inc()
	}
	if err != nil {
		d.log.Error().Err(err).Int64("delivery", a.id).Msg("recording a delivery outcome failed; it will be retried")
	}
}
