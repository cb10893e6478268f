package faultproxy

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// readFrame reads one whole RESP2/RESP3 value (a request or a reply) from r and returns its
// bytes as they came, so they can be passed on unchanged.
func readFrame(r *bufio.Reader) ([]byte, error) {
	var buf []byte
	if err := readValue(r, &buf); err != nil {
		return nil, err
	}
	return buf, nil
}

func readLine(r *bufio.Reader, buf *[]byte) (string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	*buf = append(*buf, line...)
	return strings.TrimRight(line, "\r\n"), nil
}

func readValue(r *bufio.Reader, buf *[]byte) error {
	line, err := readLine(r, buf)
	if err != nil {
		return err
	}
	if line == "" {
		return errors.New("resp: empty line")
	}
	switch line[0] {
	case '+', '-', ':', '_', ',', '#', '(':
		return nil
	case '$', '!', '=':
		n, err := strconv.Atoi(line[1:])
		if err != nil {
			return fmt.Errorf("resp: bad length %q", line)
		}
		if n < 0 {
			return nil
		}
		start := len(*buf)
		*buf = append(*buf, make([]byte, n+2)...)
		_, err = io.ReadFull(r, (*buf)[start:])
		return err
	case '*', '~', '>':
		return readElems(r, buf, line, 1)
	case '%', '|':
		return readElems(r, buf, line, 2)
	}
	// An inline command (plain text line), as redis-cli or telnet send.
	return nil
}

func readElems(r *bufio.Reader, buf *[]byte, line string, per int) error {
	n, err := strconv.Atoi(line[1:])
	if err != nil {
		return fmt.Errorf("resp: bad count %q", line)
	}
	for i := 0; i < n*per; i++ {
		if err := readValue(r, buf); err != nil {
			return err
		}
	}
	return nil
}

// commandOf names a request frame for rules: the command in upper case, and for FCALL,
// FCALL_RO and EVALSHA also the called function's name (or script sha), lower case, after a
// space: "FCALL flashhold_0123456789abcdef_reserve".
func commandOf(frame []byte) string {
	args := requestArgs(frame, 2)
	if len(args) == 0 {
		return ""
	}
	name := strings.ToUpper(args[0])
	if (name == "FCALL" || name == "FCALL_RO" || name == "EVALSHA") && len(args) > 1 {
		return name + " " + strings.ToLower(args[1])
	}
	return name
}

// requestArgs returns up to max leading arguments of a request frame.
func requestArgs(frame []byte, max int) []string {
	s := string(frame)
	if len(s) == 0 || s[0] != '*' {
		return strings.Fields(s) // inline
	}
	var out []string
	i := strings.Index(s, "\r\n")
	if i < 0 {
		return nil
	}
	s = s[i+2:]
	for len(out) < max && len(s) > 0 && s[0] == '$' {
		j := strings.Index(s, "\r\n")
		if j < 0 {
			break
		}
		n, err := strconv.Atoi(s[1:j])
		if err != nil || j+2+n > len(s) {
			break
		}
		out = append(out, s[j+2:j+2+n])
		s = s[j+2+n:]
		if len(s) >= 2 {
			s = s[2:]
		}
	}
	return out
}
