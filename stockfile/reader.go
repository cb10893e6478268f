package stockfile

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
)

// Formats a file may come in.
const (
	CSV  = "csv"
	JSON = "json"
)

// Format is the file format a Content-Type names, or an error naming what is accepted.
func Format(contentType string) (string, error) {
	mt, _, _ := mime.ParseMediaType(contentType)
	switch mt {
	case "application/json", "":
		return JSON, nil
	case "text/csv":
		return CSV, nil
	}
	return "", errorf(http.StatusUnsupportedMediaType, "unsupported_media_type", "send application/json or text/csv, not %q", mt)
}

// Row is one change of a file, numbered as the sender sees it (CSV: its line, the header
// being line 1; JSON: its place in items, from 1). Err says why a row could not be read;
// Change is then what could be.
type Row struct {
	N int
	Change
	Err *Error
}

// Reader reads a file's rows one at a time.
type Reader interface {
	// Next is the next row; io.EOF after the last. Any other error means the rest of the
	// file cannot be read (*Error says why).
	Next() (Row, error)
}

// NewReader reads a file of format from r. A header that cannot be read is an error here.
func NewReader(format string, r io.Reader) (Reader, error) {
	if format == CSV {
		return newCSVReader(r)
	}
	return newJSONReader(r)
}

func badFile(format string, args ...any) *Error {
	return errorf(http.StatusBadRequest, "bad_request", format, args...)
}

var columns = map[string]bool{"location": true, "sku": true, "item_id": true, "stock_quantity": true,
	"change_type": true, "quantity_change": true, "transaction_id": true, "reason": true}

type csvReader struct {
	r    *csv.Reader
	col  map[string]int
	line int
}

func newCSVReader(r io.Reader) (*csvReader, error) {
	cr := csv.NewReader(bufio.NewReaderSize(r, 64<<10))
	cr.FieldsPerRecord = -1
	cr.TrimLeadingSpace = true
	cr.ReuseRecord = true
	header, err := cr.Read()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, badFile("CSV header: the file is empty")
		}
		return nil, badFile("CSV header: %v", err)
	}
	col := map[string]int{}
	for i, h := range header {
		name := strings.ToLower(strings.TrimSpace(h))
		if !columns[name] {
			return nil, badFile("CSV header: unknown column %q", h)
		}
		if _, dup := col[name]; dup {
			return nil, badFile("CSV header: column %q twice", h)
		}
		col[name] = i
	}
	if _, ok := col["location"]; !ok {
		return nil, badFile("CSV header: a location column is required")
	}
	return &csvReader{r: cr, col: col, line: 1}, nil
}

func (c *csvReader) Next() (Row, error) {
	rec, err := c.r.Read()
	if errors.Is(err, io.EOF) {
		return Row{}, io.EOF
	}
	c.line++
	row := Row{N: c.line}
	if err != nil {
		var pe *csv.ParseError
		if !errors.As(err, &pe) {
			return Row{}, badFile("CSV line %d: %v", c.line, err)
		}
		row.Err = badFile("CSV: %v", pe.Err)
		return row, nil
	}
	get := func(name string) string {
		if i, ok := c.col[name]; ok && i < len(rec) {
			return strings.TrimSpace(rec[i])
		}
		return ""
	}
	row.Change = Change{Location: get("location"), SKU: get("sku"), ItemID: get("item_id"), ChangeType: get("change_type"),
		TransactionID: get("transaction_id"), Reason: get("reason")}
	num := func(name string) *int64 {
		s := get(name)
		if s == "" {
			return nil
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil && row.Err == nil {
			row.Err = invalidf("%s: %q is not a whole number", name, s)
		}
		return &n
	}
	row.StockQuantity, row.QuantityChange = num("stock_quantity"), num("quantity_change")
	return row, nil
}

// jsonReader reads {"items": [change, ...]} one change at a time. A change of the wrong shape
// (a field of the wrong type, an unknown field) is a bad row; broken JSON ends the file.
type jsonReader struct {
	dec  *json.Decoder
	n    int
	done bool
}

func newJSONReader(r io.Reader) (*jsonReader, error) {
	dec := json.NewDecoder(bufio.NewReaderSize(r, 64<<10))
	dec.DisallowUnknownFields()
	if err := expectDelim(dec, '{'); err != nil {
		return nil, err
	}
	tok, err := dec.Token()
	if err != nil {
		return nil, malformed(err)
	}
	if d, ok := tok.(json.Delim); ok && d == '}' {
		return nil, badFile("malformed JSON body: no items")
	}
	if tok != "items" {
		return nil, badFile("malformed JSON body: unknown field %v; want {\"items\": [...]}", tok)
	}
	if err := expectDelim(dec, '['); err != nil {
		return nil, err
	}
	return &jsonReader{dec: dec}, nil
}

func malformed(err error) *Error {
	if errors.Is(err, io.EOF) {
		return badFile("malformed JSON body: it ends early")
	}
	return badFile("malformed JSON body: %v", err)
}

func expectDelim(dec *json.Decoder, want json.Delim) error {
	tok, err := dec.Token()
	if err != nil {
		return malformed(err)
	}
	if d, ok := tok.(json.Delim); !ok || d != want {
		return badFile("malformed JSON body: want %q, got %v", want, tok)
	}
	return nil
}

func (j *jsonReader) Next() (Row, error) {
	if j.done {
		return Row{}, io.EOF
	}
	if !j.dec.More() {
		j.done = true
		if err := expectDelim(j.dec, ']'); err != nil {
			return Row{}, err
		}
		if err := expectDelim(j.dec, '}'); err != nil {
			return Row{}, err
		}
		if _, err := j.dec.Token(); !errors.Is(err, io.EOF) {
			return Row{}, badFile("malformed JSON body: data after the object")
		}
		return Row{}, io.EOF
	}
	j.n++
	row := Row{N: j.n}
	if err := j.dec.Decode(&row.Change); err != nil {
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &te):
			row.Err = invalidf("field %s must be %s", te.Field, te.Type)
		case strings.HasPrefix(err.Error(), "json: unknown field"):
			row.Err = invalidf("%s", strings.TrimPrefix(err.Error(), "json: "))
		default:
			return Row{}, malformed(err)
		}
	}
	return row, nil
}
