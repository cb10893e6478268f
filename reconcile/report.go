package reconcile

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"html/template"
	"os"
	"path/filepath"
	"sort"
	"strconv"
)

// Write puts report.json, findings.csv and report.html (self-contained) into dir.
func (rep *Report) Write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	raw, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "report.json"), append(raw, '\n'), 0o644); err != nil {
		return err
	}
	if err := rep.writeCSV(filepath.Join(dir, "findings.csv")); err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(dir, "report.html"))
	if err != nil {
		return err
	}
	defer f.Close()
	return page.Execute(f, rep)
}

func (rep *Report) writeCSV(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	w := csv.NewWriter(f)
	w.Write([]string{"run_id", "kind", "partition", "location", "sku", "shard", "seq_from", "seq_to", "amount", "repaired", "detail"})
	for _, x := range rep.Findings {
		w.Write([]string{strconv.FormatInt(rep.RunID, 10), x.Kind, strconv.Itoa(x.Partition), x.Location, x.SKU,
			strconv.Itoa(x.Shard), strconv.FormatInt(x.SeqFrom, 10), strconv.FormatInt(x.SeqTo, 10),
			strconv.FormatInt(x.Amount, 10), strconv.FormatBool(x.Repaired), x.Detail})
	}
	w.Flush()
	return w.Error()
}

// Kinds returns the finding kinds present, sorted, for the summary.
func (rep *Report) Kinds() []string {
	var ks []string
	for k := range rep.ByKind {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// explain says in plain words what each kind of finding means.
var explain = map[string]string{
	KindDrift:        "A live stock counter in Redis differs from what the ledger's events add up to.",
	KindGap:          "Events are missing from the ledger: their sequence numbers are absent.",
	KindChainBreak:   "A ledger row does not match its fingerprint or does not follow the one before: it was edited or reordered.",
	KindOrphanHold:   "Redis holds a reservation that no recorded event created.",
	KindLostHold:     "The ledger shows an open reservation that Redis no longer has.",
	KindHalfTransfer: "Units were taken from one sub-counter for another and never arrived.",
	KindLedgerAhead:  "The ledger holds changes Redis no longer has: Redis lost acknowledged writes (restart or failover).",
	KindFork:         "Redis and the ledger disagree about the same change.",
	KindFenced:       "The partition refuses changes until it is repaired.",
	KindForkConflict: "After Redis lost changes, it accepted a sale or hold that the remaining stock cannot cover; it was not applied and needs a decision.",
}

var page = template.Must(template.New("report").Funcs(template.FuncMap{
	"explain": func(k string) string { return explain[k] },
	"shard": func(s int) string {
		if s < 0 {
			return "—"
		}
		return strconv.Itoa(s)
	},
	"seqs": func(f Finding) string {
		switch {
		case f.Kind == KindDrift:
			return fmt.Sprintf("as of %d", f.SeqTo)
		case f.SeqFrom == 0 && f.SeqTo == 0:
			return "—"
		case f.SeqFrom == 0 || f.SeqFrom == f.SeqTo:
			return fmt.Sprint(f.SeqTo)
		}
		return fmt.Sprintf("%d–%d", f.SeqFrom, f.SeqTo)
	},
}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>flashhold reconciliation {{.RunID}}</title>
<style>
body{font:15px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#1d2330;padding:0 1rem}
h1{font-size:1.5rem;margin-bottom:.2rem} .sub{color:#5b6475;margin-top:0}
.verdict{padding:1rem 1.2rem;border-radius:8px;font-size:1.15rem;margin:1.2rem 0}
.ok{background:#e6f6ea;border:1px solid #9bd3a8} .bad{background:#fdecea;border:1px solid #f0a39b}
.cards{display:flex;gap:1rem;flex-wrap:wrap;margin:1rem 0}
.card{flex:1;min-width:160px;border:1px solid #d9dee8;border-radius:8px;padding:.8rem 1rem}
.card b{display:block;font-size:1.6rem} table{border-collapse:collapse;width:100%;margin:.5rem 0 1.5rem}
th,td{border-bottom:1px solid #e3e7ee;padding:.4rem .5rem;text-align:left;vertical-align:top} th{background:#f5f7fa}
td.n{text-align:right;font-variant-numeric:tabular-nums}
</style></head><body>
<h1>Stock reconciliation report</h1>
<p class="sub">Run {{.RunID}} · started {{.StartedAt.Format "2006-01-02 15:04:05 UTC"}} · finished {{.FinishedAt.Format "2006-01-02 15:04:05 UTC"}}</p>
{{if .Clean}}<div class="verdict ok" id="verdict">No discrepancies: every change recorded in the ledger matches the live stock.</div>
{{else}}<div class="verdict bad" id="verdict">{{len .Findings}} {{if eq (len .Findings) 1}}discrepancy{{else}}discrepancies{{end}} found. Each is listed below with where it is and how large it is.</div>{{end}}
<div class="cards">
<div class="card"><b id="pools">{{.Pools}}</b>stock pools checked</div>
<div class="card"><b id="partitions">{{.Partitions}}</b>partitions checked</div>
<div class="card"><b id="events">{{.Events}}</b>recorded changes replayed</div>
<div class="card"><b id="findings">{{len .Findings}}</b>discrepancies</div>
</div>
<p>The live stock (held in Redis) was read at one consistent moment per partition, and every
recorded change (the ledger, in PostgreSQL) was replayed up to that moment and compared with it.</p>
{{if not .Clean}}<h2>Discrepancies by kind</h2>
<table><tr><th>Kind</th><th>Count</th><th>What it means</th></tr>
{{range $k := .Kinds}}<tr><td>{{$k}}</td><td class="n">{{index $.ByKind $k}}</td><td>{{explain $k}}</td></tr>
{{end}}</table>
<h2>Details</h2>
<table><tr><th>Kind</th><th>Partition</th><th>Location</th><th>SKU</th><th>Shard</th><th>Sequence</th><th>Amount</th><th>Repaired</th><th>Detail</th></tr>
{{range .Findings}}<tr><td>{{.Kind}}</td><td class="n">{{.Partition}}</td><td>{{.Location}}</td><td>{{.SKU}}</td><td class="n">{{shard .Shard}}</td><td class="n">{{seqs .}}</td><td class="n">{{.Amount}}</td><td>{{if .Repaired}}yes{{else}}no{{end}}</td><td>{{.Detail}}</td></tr>
{{end}}</table>{{end}}
</body></html>
`))
