package control_test

import (
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vigil-run/vigil/host/control"
)

// TestControlReloadSwapAndMetrics drives `vigil reload`, `vigil swap` and
// the --metrics endpoint of a real `vigil run`.
func TestControlReloadSwapAndMetrics(t *testing.T) {
	cfg := writeConfig(t, app)
	h := startHost(t, cfg, "--metrics", "127.0.0.1:0")
	st := waitRunning(t, cfg, "sink", "collector", "tick")
	sinkPID := node(st, "sink").PID

	// The metrics endpoint serves the tree.
	var url string
	eventually(t, 10*time.Second, "the metrics URL in the log", func() bool {
		m := regexp.MustCompile(`url=(http://127\.0\.0\.1:[0-9]+/metrics)`).FindStringSubmatch(h.out.String())
		if m != nil {
			url = m[1]
		}
		return m != nil
	})
	body := scrape(t, url)
	for _, want := range []string{
		`vigil_worker_state{pool="",state="running",worker="sink"} 1`,
		`vigil_supervisor_restart_intensity_max_restarts{supervisor="ops"} 20`,
	} {
		if !strings.Contains(body, want) {
			t.Fatalf("metrics lack %s:\n%s", want, body)
		}
	}

	// A reload: "collector" stays, "tick" goes, "tock" comes, "sink"
	// changes its config (hot-swapped).
	reloaded := strings.Replace(app, `config { forward_to = "collector" }`, `config {
      forward_to = "collector"
      delay      = "1ms"
    }`, 1)
	reloaded = strings.Replace(reloaded, `worker "tick" {`, `worker "tock" {`, 1)
	rewrite(t, cfg, reloaded)
	out := mustCLI(t, "reload", "--config", cfg)
	for _, want := range []string{"added     tock", "removed   tick", "swapped   sink"} {
		if !strings.Contains(out, want) {
			t.Fatalf("reload printed:\n%s\nwant a line %q", out, want)
		}
	}
	st = waitRunning(t, cfg, "sink", "collector", "tock")
	if n := node(st, "tick"); n.ID != "" {
		t.Fatalf("tick still in the tree after the reload: %+v", n)
	}
	if n := node(st, "sink"); n.PID == sinkPID || n.Restarts != 0 {
		t.Fatalf("sink after the swap: pid %d (was %d), %d restarts; want a new pid and no restart", n.PID, sinkPID, n.Restarts)
	}
	if !strings.Contains(scrape(t, url), `vigil_events_total{kind="child_swapped",supervisor="ops"} 1`) {
		t.Fatalf("the swap is not counted in the metrics")
	}

	// Nothing to do the second time.
	if out := mustCLI(t, "reload", "--config", cfg); !strings.Contains(out, "nothing changed") {
		t.Fatalf("second reload printed:\n%s", out)
	}

	// Changes a running tree cannot take are refused, naming file and
	// line, and change nothing.
	rewrite(t, cfg, strings.Replace(reloaded, `supervisor "clocks" {`, `supervisor "clocks" {
    strategy = "one_for_all"`, 1))
	_, errOut, code := cli(t, "reload", "--config", cfg)
	if code == 0 || !strings.Contains(errOut, "restart required") || !strings.Contains(errOut, "app.hcl:") {
		t.Fatalf("supervisor change: exit %d, stderr:\n%s", code, errOut)
	}
	rewrite(t, cfg, reloaded+"\n}")
	_, errOut, code = cli(t, "reload", "--config", cfg)
	if code == 0 || !strings.Contains(errOut, "nothing was changed") || !regexp.MustCompile(`app\.hcl:\d+:\d+`).MatchString(errOut) {
		t.Fatalf("syntax error: exit %d, stderr:\n%s", code, errOut)
	}
	waitRunning(t, cfg, "sink", "collector", "tock")

	// swap: a new incarnation from the binary on disk, no restart.
	pid := node(status(t, cfg), "sink").PID
	if out := mustCLI(t, "swap", "--config", cfg, "sink"); !strings.Contains(out, "sink: swapped") {
		t.Fatalf("swap printed %q", out)
	}
	if n := node(status(t, cfg), "sink"); n.PID == pid || n.State != "running" || n.Restarts != 0 {
		t.Fatalf("sink after vigil swap: %+v (old pid %d)", n, pid)
	}
	if _, errOut, code := cli(t, "swap", "--config", cfg, "nope"); code == 0 || !strings.Contains(errOut, "no worker or pool named") {
		t.Fatalf("swap nope: exit %d, %s", code, errOut)
	}
}

func TestRunRefusesANonLoopbackMetricsAddress(t *testing.T) {
	cfg := writeConfig(t, app)
	_, errOut, code := cli(t, "run", "--metrics", "0.0.0.0:9102", cfg)
	if code != 1 || !strings.Contains(errOut, "not a loopback address") || !strings.Contains(errOut, "127.0.0.1:9102") {
		t.Fatalf("exit %d, stderr:\n%s", code, errOut)
	}
}

func rewrite(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(body, "{P}", pluginDir())), 0o644); err != nil {
		t.Fatal(err)
	}
}

func scrape(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape %s: %v %s", url, err, resp.Status)
	}
	return string(b)
}

// TestControlOverTCP: --control-tcp serves the same API on loopback,
// only to requests with the token the host wrote (mode 0600) next to its
// socket; the CLI reaches it with --control tcp://….
func TestControlOverTCP(t *testing.T) {
	cfg := writeConfig(t, app)
	h := startHost(t, cfg, "--control-tcp", "127.0.0.1:0")
	waitRunning(t, cfg, "sink", "collector", "tick")
	var addr string
	eventually(t, 10*time.Second, "the TCP address in the log", func() bool {
		m := regexp.MustCompile(`address=tcp://(127\.0\.0\.1:[0-9]+)`).FindStringSubmatch(h.out.String())
		if m != nil {
			addr = m[1]
		}
		return m != nil
	})
	fi, err := os.Stat(control.TokenPath(cfg))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file: %v, mode %v; want 0600", err, fi.Mode().Perm())
	}
	out := mustCLI(t, "status", "--config", cfg, "--control", "tcp://"+addr)
	if !strings.Contains(out, "sink") || !strings.Contains(out, "running") {
		t.Fatalf("status over TCP:\n%s", out)
	}
	for name, auth := range map[string]string{"no token": "", "wrong token": "Bearer 00"} {
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/v1/status", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(body), "token") {
			t.Fatalf("%s: %s %s", name, resp.Status, body)
		}
	}
	h.stop(t)
	if _, err := os.Stat(control.TokenPath(cfg)); !os.IsNotExist(err) {
		t.Fatalf("token file left behind: %v", err)
	}
	if _, errOut, code := cli(t, "run", "--control-tcp", "0.0.0.0:9101", cfg); code != 1 || !strings.Contains(errOut, "not a loopback address") {
		t.Fatalf("non-loopback --control-tcp: exit %d, %s", code, errOut)
	}
}
