package config

import (
	_ "embed"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"
)

// Class says who is expected to set a variable.
type Class string

const (
	// Operator settings are chosen for each deployment: where things are, secrets, lifetimes.
	Operator Class = "operator"
	// Tuning knobs have defaults that suit most deployments; change one when a measurement says so.
	Tuning Class = "tuning"
)

// Var is one environment variable: a line of variables.txt.
type Var struct {
	Name  string
	Class Class
	// Group is the part of flashhold the variable belongs to (a heading in the docs).
	Group string
	// Fields are the Config fields it sets, as paths (Engine.RedisURL); all take its value.
	Fields []string
	Help   string
}

//go:embed variables.txt
var variablesText string

// table is variables.txt read; a line it cannot read stops every command, and the tests.
var table = mustReadTable(variablesText)

// Vars lists every variable flashhold reads, in the order of variables.txt.
func Vars() []Var { return table }

// Default is the variable's value in Default(), as it would be written.
func (v Var) Default() string {
	c := Default()
	return show(v.field(&c, 0).Interface())
}

// field is the i-th field v sets in c.
func (v Var) field(c *Config, i int) reflect.Value {
	f := reflect.ValueOf(c).Elem()
	for _, name := range strings.Split(v.Fields[i], ".") {
		if f.Kind() != reflect.Struct {
			return reflect.Value{}
		}
		f = f.FieldByName(name)
	}
	return f
}

// set reads raw into every field v sets in c. caarlos0/env reads the value: it is handed to
// a struct of one field, of the fields' type, under the tag V, so every type env knows
// (durations, lists, numbers, booleans) reads as it always has.
func (v Var) set(c *Config, raw string) error {
	holder := reflect.New(reflect.StructOf([]reflect.StructField{{
		Name: "V", Type: v.field(c, 0).Type(), Tag: `env:"V" envSeparator:","`,
	}}))
	if err := env.ParseWithOptions(holder.Interface(), env.Options{Environment: map[string]string{"V": raw}}); err != nil {
		var pe env.ParseError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return fmt.Errorf("%s=%q: %w", v.Name, raw, err)
	}
	for i := range v.Fields {
		v.field(c, i).Set(holder.Elem().Field(0))
	}
	return nil
}

// read sets c from environ (name to value); an unset or empty variable leaves its default.
// Every value that cannot be read is reported, each with its variable.
func read(c *Config, environ map[string]string) error {
	var errs []error
	for _, v := range table {
		if raw := environ[v.Name]; raw != "" {
			errs = append(errs, v.set(c, raw))
		}
	}
	return errors.Join(errs...)
}

// show writes a value as one would set it: 5m rather than 5m0s, lists comma-separated.
func show(v any) string {
	switch v := v.(type) {
	case time.Duration:
		s := v.String()
		if strings.HasSuffix(s, "m0s") {
			s = strings.TrimSuffix(s, "0s")
		}
		if strings.HasSuffix(s, "h0m") {
			s = strings.TrimSuffix(s, "0m")
		}
		return s
	case []string:
		return strings.Join(v, ",")
	}
	return fmt.Sprint(v)
}

func mustReadTable(text string) []Var {
	vs, err := readTable(text)
	if err != nil {
		panic("config/variables.txt: " + err.Error())
	}
	return vs
}

// readTable reads variables.txt: "[group]" lines, then "NAME class Field[,Field] help".
func readTable(text string) ([]Var, error) {
	var vs []Var
	group := ""
	var c Config
	for n, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
			continue
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			group = line[1 : len(line)-1]
			continue
		}
		f := strings.Fields(line)
		if len(f) < 4 || group == "" || Class(f[1]) != Operator && Class(f[1]) != Tuning {
			return nil, fmt.Errorf("line %d: want NAME operator|tuning Field[,Field] help, under a [group]", n+1)
		}
		v := Var{Name: f[0], Class: Class(f[1]), Group: group, Fields: strings.Split(f[2], ","), Help: strings.Join(f[3:], " ")}
		for i, path := range v.Fields {
			if fv := v.field(&c, i); !fv.IsValid() || fv.Kind() == reflect.Struct || fv.Type() != v.field(&c, 0).Type() {
				return nil, fmt.Errorf("line %d: %s: no field %s of Config of the type of %s", n+1, v.Name, path, v.Fields[0])
			}
		}
		vs = append(vs, v)
	}
	return vs, nil
}
