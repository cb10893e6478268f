package sweeper

import (
	"math"
	"time"
)

// bucket is a token bucket read with explicit times, so tests drive it with a fake clock.
type bucket struct {
	rate   float64 // tokens per second; 0: unlimited
	burst  float64
	tokens float64
	last   time.Time
}

func newBucket(rate float64, burst int) *bucket {
	return &bucket{rate: rate, burst: float64(max(burst, 1)), tokens: float64(max(burst, 1))}
}

// take removes up to n tokens and returns how many it removed.
func (b *bucket) take(now time.Time, n int) int {
	if b.rate <= 0 {
		return n
	}
	if !b.last.IsZero() && now.After(b.last) {
		b.tokens = math.Min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	}
	if b.last.IsZero() || now.After(b.last) {
		b.last = now
	}
	got := min(n, int(b.tokens))
	b.tokens -= float64(got)
	return got
}

// giveBack returns tokens taken but not used.
func (b *bucket) giveBack(n int) {
	if b.rate > 0 && n > 0 {
		b.tokens = math.Min(b.burst, b.tokens+float64(n))
	}
}
