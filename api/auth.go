package api

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Roles an API key can have.
const (
	RoleClient = "client" // checkout: holds and availability
	RoleVendor = "vendor" // its own vendor's inventory and events
	RoleAdmin  = "admin"  // everything
)

var keyIDPattern = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,64}$`)

// KeySpec is one API key as configured: the key itself is never stored, only its SHA-256.
type KeySpec struct {
	ID        string `json:"id"`
	SHA256    string `json:"sha256"`
	Role      string `json:"role"`
	Vendor    string `json:"vendor,omitempty"`
	RateLimit int    `json:"rate_per_sec,omitempty"` // 0: the server default; negative: unlimited
}

// HashKey returns the hex SHA-256 under which a key is stored.
func HashKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// ParseKeys reads key specs from JSON (an array of KeySpec) or from the inline form
// "id:role[:vendor]:sha256,..." used in FLASHHOLD_API_KEYS.
func ParseKeys(data string) ([]KeySpec, error) {
	data = strings.TrimSpace(data)
	if data == "" {
		return nil, nil
	}
	var specs []KeySpec
	if strings.HasPrefix(data, "[") {
		if err := json.Unmarshal([]byte(data), &specs); err != nil {
			return nil, fmt.Errorf("api keys: %w", err)
		}
	} else {
		for _, item := range strings.Split(data, ",") {
			f := strings.Split(strings.TrimSpace(item), ":")
			switch len(f) {
			case 3:
				specs = append(specs, KeySpec{ID: f[0], Role: f[1], SHA256: f[2]})
			case 4:
				specs = append(specs, KeySpec{ID: f[0], Role: f[1], Vendor: f[2], SHA256: f[3]})
			default:
				return nil, fmt.Errorf("api keys: %q: want id:role[:vendor]:sha256", item)
			}
		}
	}
	for _, s := range specs {
		if err := s.validate(); err != nil {
			return nil, err
		}
	}
	return specs, nil
}

// LoadKeys reads key specs from a file (JSON) and from an inline list; both may be empty.
func LoadKeys(file, inline string) ([]KeySpec, error) {
	var specs []KeySpec
	if file != "" {
		raw, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("api keys file: %w", err)
		}
		s, err := ParseKeys(string(raw))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		specs = append(specs, s...)
	}
	s, err := ParseKeys(inline)
	if err != nil {
		return nil, err
	}
	return append(specs, s...), nil
}

func (s KeySpec) validate() error {
	if !keyIDPattern.MatchString(s.ID) {
		return fmt.Errorf("api key id %q must match %s", s.ID, keyIDPattern)
	}
	if b, err := hex.DecodeString(s.SHA256); err != nil || len(b) != sha256.Size {
		return fmt.Errorf("api key %s: sha256 must be 64 hex digits", s.ID)
	}
	switch s.Role {
	case RoleClient, RoleAdmin:
	case RoleVendor:
		if !keyIDPattern.MatchString(s.Vendor) {
			return fmt.Errorf("api key %s: a vendor key names its vendor", s.ID)
		}
	default:
		return fmt.Errorf("api key %s: role must be client, vendor or admin", s.ID)
	}
	return nil
}

// apiKey is a configured key with its rate limiter.
type apiKey struct {
	KeySpec
	limiter *rate.Limiter // nil: unlimited
}

// keyring finds keys by the hash of what a caller presents.
type keyring struct {
	mu     sync.RWMutex
	byHash map[string]*apiKey
}

func newKeyring(specs []KeySpec, defaultRate, burst int) (*keyring, error) {
	kr := &keyring{byHash: make(map[string]*apiKey, len(specs))}
	for _, s := range specs {
		if err := s.validate(); err != nil {
			return nil, err
		}
		k := &apiKey{KeySpec: s}
		// A key with its own rate gets a burst of one second's worth; others the server's.
		r, b := s.RateLimit, s.RateLimit
		if r == 0 {
			r, b = defaultRate, burst
		}
		if r > 0 {
			k.limiter = rate.NewLimiter(rate.Limit(r), max(b, 1))
		}
		kr.byHash[strings.ToLower(s.SHA256)] = k
	}
	return kr, nil
}

func (kr *keyring) lookup(presented string) *apiKey {
	kr.mu.RLock()
	defer kr.mu.RUnlock()
	return kr.byHash[HashKey(presented)]
}

// allow takes one token from the key's bucket, or says how long until one is there.
func (k *apiKey) allow(now time.Time) (bool, time.Duration) {
	if k.limiter == nil {
		return true, 0
	}
	r := k.limiter.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}
