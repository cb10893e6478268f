package config

import (
	"bytes"
	"fmt"
	"strings"
)

// DocPath is where Markdown's text is kept, from the module's root.
const DocPath = "docs/configuration.md"

// Markdown is docs/configuration.md: every variable with its default and meaning, the
// operator settings first, then the tuning knobs by group.
func Markdown() []byte {
	var b bytes.Buffer
	b.WriteString(`# Configuration

<!-- Written by ` + "`make docs-config`" + ` from config/variables.txt: edit the list there, not this file. -->

flashhold reads its configuration from ` + "`FLASHHOLD_*`" + ` environment variables. A variable
that is unset or empty takes its default. Every command refuses to start when a value cannot
be read (naming the variable and the value) or cannot work (naming the variable).

## Operator settings

What each deployment chooses: where Redis, Postgres and the API are, the secrets, the hold
lifetimes it offers, how it stops and logs.
`)
	var operator, tuning []Var
	for _, v := range Vars() {
		if v.Class == Operator {
			operator = append(operator, v)
		} else {
			tuning = append(tuning, v)
		}
	}
	writeTable(&b, operator)
	b.WriteString(`
## Tuning knobs

Their defaults suit most deployments; change one when a measurement says so.
`)
	for i := 0; i < len(tuning); {
		j := i
		for j < len(tuning) && tuning[j].Group == tuning[i].Group {
			j++
		}
		fmt.Fprintf(&b, "\n### %s\n", tuning[i].Group)
		writeTable(&b, tuning[i:j])
		i = j
	}
	return b.Bytes()
}

func writeTable(b *bytes.Buffer, vs []Var) {
	b.WriteString("\n| variable | default | meaning |\n|---|---|---|\n")
	for _, v := range vs {
		def := "(empty)"
		if d := v.Default(); d != "" {
			def = "`" + d + "`"
		}
		fmt.Fprintf(b, "| `%s` | %s | %s |\n", v.Name, def, strings.ReplaceAll(v.Help, "|", `\|`))
	}
}
