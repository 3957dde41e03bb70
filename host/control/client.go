package control

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/vigil-run/vigil/host"
)

// Client talks to a host's control socket. Create it with [NewClient].
// Safe for concurrent use.
type Client struct {
	path   string
	config string // for error messages; may be empty
	hc     *http.Client
	long   *http.Client // no overall timeout: reloads and swaps take what they take
	tcp    bool         // path is "tcp://…": requests carry the token of TokenPath(config)
}

// NewClient returns a client for the control socket at path. config names
// the config file in the "no host running" error (may be empty). It does
// not connect.
//
// A path "tcp://HOST:PORT" reaches a host's TCP control API ([ListenTCP]);
// each request then carries the token read from [TokenPath](config).
func NewClient(path, config string) *Client {
	network, addr := "unix", path
	if a, ok := strings.CutPrefix(path, "tcp://"); ok {
		network, addr = "tcp", a
	}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
		DisableKeepAlives: true,
	}
	return &Client{path: path, config: config, tcp: network == "tcp",
		hc: &http.Client{Transport: tr, Timeout: 30 * time.Second}, long: &http.Client{Transport: tr}}
}

// authorize adds the TCP control API's token to req.
func (c *Client) authorize(req *http.Request) error {
	if !c.tcp {
		return nil
	}
	tok, err := os.ReadFile(TokenPath(c.config))
	if err != nil {
		return fmt.Errorf("control %s: reading the host's token: %w (give the host's config with --config)", c.path, err)
	}
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	return nil
}

// do sends a request and decodes a JSON answer into out (if not nil). It
// blocks up to 30 s. Errors wrap [ErrNoHost] when nobody listens on the
// socket; a server error is returned with its message.
func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	return c.doWith(c.hc, ctx, method, path, in, out)
}

// doWith is do with the given HTTP client.
func (c *Client) doWith(hc *http.Client, ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://vigil"+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if err := c.authorize(req); err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return c.dialErr(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("control socket %s: %w", c.path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return c.statusErr(resp, data)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("control socket %s: bad answer: %w", c.path, err)
		}
	}
	return nil
}

// dialErr maps a request error, wrapping [ErrNoHost] when nobody listens.
func (c *Client) dialErr(err error) error {
	if isNoHost(err) {
		cfg := c.config
		if cfg == "" {
			cfg = "this config"
		}
		return fmt.Errorf("%w for %s (socket %s): start it with `vigil run %s`", ErrNoHost, cfg, c.path, cfg)
	}
	return fmt.Errorf("control socket %s: %w", c.path, err)
}

// statusErr returns the server's error message of a non-200 answer.
func (c *Client) statusErr(resp *http.Response, data []byte) error {
	var e errorBody
	if json.Unmarshal(data, &e) == nil && e.Error != "" {
		return errors.New(e.Error)
	}
	return fmt.Errorf("control socket %s: %s", c.path, resp.Status)
}

// Events follows the host's lifecycle events, calling fn with each line
// of GET /v1/events (an event, or a report of dropped events) as it
// arrives. It blocks until the host ends the stream (it stopped: nil), ctx
// is done (ctx.Err()), fn returns an error (that error) or the connection
// fails. Errors wrap [ErrNoHost] when nobody listens on the socket.
func (c *Client) Events(ctx context.Context, fn func(Event) error) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://vigil/v1/events", nil)
	if err != nil {
		return err
	}
	if err := c.authorize(req); err != nil {
		return err
	}
	hc := &http.Client{Transport: c.hc.Transport} // no overall timeout: a stream
	resp, err := hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return c.dialErr(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return c.statusErr(resp, data)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for sc.Scan() {
		var e Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return fmt.Errorf("control socket %s: bad event line: %w", c.path, err)
		}
		if err := fn(e); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("control socket %s: event stream: %w", c.path, err)
	}
	return nil
}

// Status returns the host's supervision tree. See [Client.do] for errors.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	var st Status
	if err := c.do(ctx, http.MethodGet, "/v1/status", nil, &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// Action starts, stops or restarts a worker ("start", "stop", "restart").
// It blocks until the supervisor has done it.
func (c *Client) Action(ctx context.Context, action, worker string) error {
	return c.do(ctx, http.MethodPost, "/v1/workers/"+url.PathEscape(worker)+"/"+url.PathEscape(action), struct{}{}, nil)
}

// Send queues a message in a worker's (or pool's) mailbox and returns its
// ID.
func (c *Client) Send(ctx context.Context, worker string, req SendRequest) (string, error) {
	var res SendResult
	if err := c.do(ctx, http.MethodPost, "/v1/workers/"+url.PathEscape(worker)+"/send", req, &res); err != nil {
		return "", err
	}
	return res.ID, nil
}

// DeadLetters lists a mailbox's dead letters, oldest first.
func (c *Client) DeadLetters(ctx context.Context, worker string) ([]DeadLetter, error) {
	var out []DeadLetter
	if err := c.do(ctx, http.MethodGet, "/v1/workers/"+url.PathEscape(worker)+"/deadletters", nil, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// Replay puts dead letter id back in worker's mailbox.
func (c *Client) Replay(ctx context.Context, worker, id string) error {
	return c.do(ctx, http.MethodPost, "/v1/workers/"+url.PathEscape(worker)+"/deadletters/"+url.PathEscape(id)+"/replay", struct{}{}, nil)
}

// Discard deletes dead letter id of worker's mailbox.
func (c *Client) Discard(ctx context.Context, worker, id string) error {
	return c.do(ctx, http.MethodDelete, "/v1/workers/"+url.PathEscape(worker)+"/deadletters/"+url.PathEscape(id), nil, nil)
}

// Reload makes the host re-read its config file and apply it (see
// [host.Host.Reload]). It blocks until the host has applied it (no time
// limit but ctx's). A refused reload changed nothing; a partly failed one
// returns the report and the error.
func (c *Client) Reload(ctx context.Context) (*host.ReloadReport, error) {
	var res ReloadResult
	if err := c.doWith(c.long, ctx, http.MethodPost, "/v1/reload", struct{}{}, &res); err != nil {
		return nil, err
	}
	if res.Error != "" {
		return &res.Report, errors.New(res.Error)
	}
	return &res.Report, nil
}

// Swap hot-swaps a worker, or every member of a pool one at a time, to
// its plugin binary as it is on disk now (see [host.Host.Swap]). It
// blocks until done (no time limit but ctx's).
func (c *Client) Swap(ctx context.Context, worker string) error {
	return c.doWith(c.long, ctx, http.MethodPost, "/v1/workers/"+url.PathEscape(worker)+"/swap", struct{}{}, nil)
}
