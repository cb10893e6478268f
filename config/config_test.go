package config

import (
	"strings"
	"testing"
)

// TestWebhookSubscriptionLimit: FLASHHOLD_WEBHOOK_MAX_SUBSCRIPTIONS defaults to 100, is read
// from the environment, and must be at least 1.
func TestWebhookSubscriptionLimit(t *testing.T) {
	cfg, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Alerts.MaxSubscriptions != 100 {
		t.Errorf("default %d, want 100", cfg.Alerts.MaxSubscriptions)
	}
	t.Setenv("FLASHHOLD_WEBHOOK_MAX_SUBSCRIPTIONS", "7")
	if cfg, err = Load(); err != nil || cfg.Alerts.MaxSubscriptions != 7 {
		t.Errorf("set to 7: %d, %v", cfg.Alerts.MaxSubscriptions, err)
	}
	t.Setenv("FLASHHOLD_WEBHOOK_MAX_SUBSCRIPTIONS", "0")
	if _, err = Load(); err == nil || !strings.Contains(err.Error(), "FLASHHOLD_WEBHOOK_MAX_SUBSCRIPTIONS") {
		t.Errorf("0 accepted: %v", err)
	}
}
