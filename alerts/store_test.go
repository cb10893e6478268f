package alerts

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/flashhold/flashhold/internal/testpg"
	"github.com/flashhold/flashhold/ledger"
)

func subscriptionStore(t *testing.T) *Store {
	t.Helper()
	pool, _ := testpg.Schema(t)
	if _, err := ledger.Migrate(context.Background(), pool); err != nil {
		t.Fatal(err)
	}
	policy, err := NewURLPolicy([]string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	return NewStore(pool, policy)
}

// TestSubscribeLimitConcurrent: many concurrent subscribes for one vendor never leave it with
// more active subscriptions than the limit; every one beyond it is refused as too many.
func TestSubscribeLimitConcurrent(t *testing.T) {
	ctx := context.Background()
	st := subscriptionStore(t)
	const tries = 150 // the default limit is 100
	var wg sync.WaitGroup
	errs := make(chan error, tries)
	for range tries {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := st.Subscribe(ctx, "acme", "http://127.0.0.1:9/hook", []string{LowStock})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	created, refused := 0, 0
	for err := range errs {
		switch {
		case err == nil:
			created++
		case errors.Is(err, ErrTooManySubscriptions):
			refused++
		default:
			t.Errorf("subscribe: %v", err)
		}
	}
	subs, err := st.Subscriptions(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if created != 100 || refused != tries-100 || len(subs) != 100 {
		t.Fatalf("created %d, refused %d, %d active; want 100, %d, 100", created, refused, len(subs), tries-100)
	}
}
