package faultproxy

import "testing"

// TestCommandOf names requests as rules see them.
func TestCommandOf(t *testing.T) {
	t.Parallel()
	for frame, want := range map[string]string{
		"*3\r\n$3\r\nset\r\n$1\r\nk\r\n$1\r\nv\r\n":                             "SET",
		"*4\r\n$5\r\nFCALL\r\n$15\r\nFlashhold_x_Rsv\r\n$1\r\n0\r\n$1\r\nz\r\n": "FCALL flashhold_x_rsv",
		"PING\r\n": "PING",
	} {
		if got := commandOf([]byte(frame)); got != want {
			t.Errorf("commandOf(%q) = %q, want %q", frame, got, want)
		}
	}
}
