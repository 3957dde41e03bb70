package metrics

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/vigil-run/vigil/host"
	"github.com/vigil-run/vigil/host/config"
	"github.com/vigil-run/vigil/sdk"
	"github.com/vigil-run/vigil/sdk/plugintest"
)

// binDir holds the plugins built by TestMain, in p/.
var binDir string

func TestMain(m *testing.M) {
	plugintest.MainWithBinaries(m, &binDir,
		plugintest.Build{Out: "p/", Pkgs: []string{"../../plugins/echo"}},
	)
}

func pluginDir() string { return filepath.Join(binDir, "p") }

// running is a host served in the background, with its metrics.
type running struct {
	h      *host.Host
	m      *Metrics
	ev     *events
	cancel context.CancelFunc
	errc   chan error
}

// runHost loads body ({P} stands for the plugin dir), builds the host with
// a Metrics fed by its event hook and serves it; the test's cleanup stops
// it and checks that no plugin process is left.
func runHost(t *testing.T, body string) *running {
	t.Helper()
	src := strings.ReplaceAll(body, "{P}", pluginDir())
	app, err := config.LoadBytes([]byte(src), filepath.Join(t.TempDir(), "app.hcl"))
	if err != nil {
		t.Fatalf("config: %s", config.Format(err))
	}
	ev := plugintest.NewRecorder[sdk.Event]()
	var mp atomic.Pointer[Metrics]
	hook := func(e sdk.Event) {
		mp.Load().Observe(e) // nil-safe
		ev.Add(e)
	}
	logger := hclog.New(&hclog.LoggerOptions{Name: "vigil", Level: hclog.Info, Output: plugintest.Output(t)}) // silenced last
	tmp, err := os.MkdirTemp("", "vm")                                                                        // short: unix socket paths
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(tmp) })
	h, err := host.New(app, host.Options{Logger: logger, EventHook: hook, TempDir: tmp})
	if err != nil {
		t.Fatal(err)
	}
	m := New(h)
	mp.Store(m)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	r := &running{h: h, m: m, ev: ev, cancel: cancel, errc: make(chan error, 1)}
	go func() { r.errc <- h.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-r.errc:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Fatal("Serve did not return within 15s of cancel")
		}
		plugintest.Eventually(t, 5*time.Second, "no plugin process left", func() bool {
			return len(plugintest.Procs(pluginDir())) == 0
		})
	})
	return r
}

// events records a host's lifecycle events.
type events = plugintest.Recorder[sdk.Event]

func started(id string, n int) func(sdk.Event) bool {
	return func(e sdk.Event) bool { return e.Kind == sdk.EventChildStarted && e.Child == id && e.Incarnation == n }
}

// scrape is one parsed scrape of a handler.
type scrape map[string]*dto.MetricFamily

// scrapeHandler GETs /metrics from h and parses the text format.
func scrapeHandler(t *testing.T, h http.Handler) scrape {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("scrape: status %d: %s", rec.Code, rec.Body)
	}
	return parse(t, rec.Body.String())
}

func parse(t *testing.T, text string) scrape {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("parsing the scrape: %v\n%s", err, text)
	}
	return fams
}

// find returns the sample of family name whose labels include labels
// ("k=v" pairs), or nil.
func (s scrape) find(name string, labels ...string) *dto.Metric {
	f := s[name]
	if f == nil {
		return nil
	}
next:
	for _, m := range f.GetMetric() {
		for _, kv := range labels {
			k, v, _ := strings.Cut(kv, "=")
			if labelValue(m, k) != v { // "" matches an absent label
				continue next
			}
		}
		return m
	}
	return nil
}

func labelValue(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// value returns a gauge's or counter's value, or a histogram's sample
// count; it fails t if there is no such sample.
func (s scrape) value(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	m := s.find(name, labels...)
	if m == nil {
		t.Fatalf("no sample %s%v in the scrape", name, labels)
	}
	switch {
	case m.Gauge != nil:
		return m.GetGauge().GetValue()
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	case m.Histogram != nil:
		return float64(m.GetHistogram().GetSampleCount())
	}
	t.Fatalf("sample %s%v has no value", name, labels)
	return 0
}

// want checks a value.
func (s scrape) want(t *testing.T, v float64, name string, labels ...string) {
	t.Helper()
	if got := s.value(t, name, labels...); got != v {
		t.Errorf("%s%v = %v, want %v", name, labels, got, v)
	}
}

func (s scrape) String() string {
	var b strings.Builder
	for name, f := range s {
		if strings.HasPrefix(name, "vigil_") {
			fmt.Fprintf(&b, "%s: %v\n", name, f.GetMetric())
		}
	}
	return b.String()
}
