package registryhosts

import (
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/pelletier/go-toml/v2"
	tomlu "github.com/pelletier/go-toml/v2/unstable"
)

// Capabilities are what a host may be asked for (containerd's docker.HostCapabilities).
type Capabilities uint8

const (
	// CapPull: fetch content by digest.
	CapPull Capabilities = 1 << iota
	// CapResolve: resolve a tag to a digest.
	CapResolve
	// CapPush: push (never used by pullgate).
	CapPush
	// CapReferrers: the referrers API (never used by pullgate).
	CapReferrers
)

// Endpoint is one host a pull tries.
type Endpoint struct {
	// Scheme is "https" or "http".
	Scheme string
	// Host is host[:port].
	Host string
	// Path is the API root, "/v2" unless the configuration says otherwise.
	Path         string
	Capabilities Capabilities
	// SkipVerify is the host's skip_verify.
	SkipVerify bool
	// Origin says this is the last endpoint: the server, or the image's registry itself.
	Origin bool
}

// Unsupported reports why pullgate cannot ask this endpoint as containerd does, or "".
func (e Endpoint) Unsupported() string {
	if e.Path != "/v2" {
		return fmt.Sprintf("API root %q is not /v2", e.Path)
	}
	return ""
}

// Config is a containerd config_path directory.
type Config struct {
	Dir string
}

// Endpoints returns the hosts a pull from registry host (host[:port], "docker.io" for
// Docker Hub, as containerd names it) tries, in order, for a request needing caps: the
// directory's hosts.toml for that host (or _default) read afresh, so an edit applies to
// the next admission. Without a hosts.toml the result is the registry itself. A hosts.toml
// that does not parse is an error (containerd then logs it and falls back to the
// certificate files of the directory, i.e. the registry itself).
func (c Config) Endpoints(host string, caps Capabilities) ([]Endpoint, error) {
	var hosts []Endpoint
	if c.Dir != "" {
		dir, err := hostDir(c.Dir, host)
		if err != nil {
			return nil, err
		}
		if dir != "" {
			b, err := os.ReadFile(filepath.Join(dir, "hosts.toml"))
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("reading hosts.toml for %s: %w", host, err)
			}
			if len(b) > 0 {
				hosts, err = Parse(b)
				if err != nil {
					return nil, fmt.Errorf("parsing %s: %w", filepath.Join(dir, "hosts.toml"), err)
				}
			}
		}
	}
	if hosts == nil {
		hosts = []Endpoint{{}}
	}
	// ConfigureHosts: a last entry without a host (no server) is the registry itself.
	if last := &hosts[len(hosts)-1]; last.Host == "" {
		last.Scheme, last.Host, last.Path = "https", host, "/v2"
		if host == "docker.io" {
			last.Host = "registry-1.docker.io"
		}
		last.Capabilities = CapPull | CapResolve | CapPush | CapReferrers
	}
	hosts[len(hosts)-1].Origin = true
	var out []Endpoint
	for _, h := range hosts {
		if h.Capabilities&caps == caps {
			out = append(out, h)
		}
	}
	return out, nil
}

// hostDir is HostDirFromRoot with hostPaths (config_unix.go): <root>/<host_port_>,
// <root>/<host[:port]>, then <root>/_default; "" when none exists.
func hostDir(root, host string) (string, error) {
	var paths []string
	if i := strings.LastIndex(host, ":"); i > 0 {
		paths = append(paths, filepath.Join(root, host[:i]+"_"+host[i+1:]+"_"))
	}
	paths = append(paths, filepath.Join(root, host), filepath.Join(root, "_default"))
	for _, p := range paths {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		} else if !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
	}
	return "", nil
}

// hostFileConfig is containerd's hostFileConfig, the fields that decide where a pull goes.
type hostFileConfig struct {
	Capabilities []string       `toml:"capabilities"`
	CACert       any            `toml:"ca"`
	Client       any            `toml:"client"`
	SkipVerify   *bool          `toml:"skip_verify"`
	Header       map[string]any `toml:"header"`
	OverridePath bool           `toml:"override_path"`
	DialTimeout  string         `toml:"dial_timeout"`
}

// Parse reads one hosts.toml (parseHostsFile): its [host."…"] tables in the order written,
// then the server (or, when server is not set, an entry without a host that Endpoints makes
// the registry itself).
func Parse(b []byte) ([]Endpoint, error) {
	order, err := sortedHosts(b)
	if err != nil {
		return nil, err
	}
	var c struct {
		hostFileConfig
		Server      string                    `toml:"server"`
		HostConfigs map[string]hostFileConfig `toml:"host"`
	}
	if err := toml.Unmarshal(b, &c); err != nil {
		return nil, err
	}
	var out []Endpoint
	for _, h := range order {
		e, err := parseHost(h, c.HostConfigs[h])
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	e, err := parseHost(c.Server, c.hostFileConfig)
	if err != nil {
		return nil, err
	}
	return append(out, e), nil
}

// parseHost is parseHostConfig: a server without scheme is https; its path gets /v2
// appended unless it ends in /v2 or override_path is set.
func parseHost(server string, cfg hostFileConfig) (Endpoint, error) {
	var e Endpoint
	if server != "" {
		if !strings.HasPrefix(server, "http") {
			server = "https://" + server
		}
		u, err := url.Parse(server)
		if err != nil {
			return Endpoint{}, fmt.Errorf("unable to parse server %v: %w", server, err)
		}
		e.Scheme, e.Host = u.Scheme, u.Host
		switch {
		case len(u.Path) > 0:
			u.Path = path.Clean(u.Path)
			if !strings.HasSuffix(u.Path, "/v2") && !cfg.OverridePath {
				u.Path += "/v2"
			}
		case !cfg.OverridePath:
			u.Path = "/v2"
		}
		e.Path = u.Path
	}
	if cfg.SkipVerify != nil {
		e.SkipVerify = *cfg.SkipVerify
	}
	if len(cfg.Capabilities) == 0 {
		e.Capabilities = CapPull | CapResolve | CapPush | CapReferrers
	}
	for _, c := range cfg.Capabilities {
		switch strings.ToLower(c) {
		case "pull":
			e.Capabilities |= CapPull
		case "resolve":
			e.Capabilities |= CapResolve
		case "push":
			e.Capabilities |= CapPush
		case "referrers":
			e.Capabilities |= CapReferrers
		default:
			return Endpoint{}, fmt.Errorf("unknown capability %v", c)
		}
	}
	return e, nil
}

// sortedHosts is getSortedHosts: the names of the top-level [host."…"] tables in the order
// written, subtables ([host."…".header]) skipped.
func sortedHosts(b []byte) ([]string, error) {
	var out []string
	p := tomlu.Parser{}
	p.Reset(b)
	var last string
	for p.NextExpression() {
		e := p.Expression()
		if e.Kind != tomlu.Table {
			continue
		}
		var parts []string
		for it := e.Key(); it.Next(); {
			parts = append(parts, string(it.Node().Data))
		}
		if len(parts) < 2 || parts[0] != "host" || parts[1] == last {
			continue
		}
		last = parts[1]
		out = append(out, last)
	}
	return out, p.Error()
}
