// Package registryhosts reads the nodes' containerd registry configuration — the hosts.toml
// directory format of containerd's config_path (<dir>/<host>/hosts.toml, <dir>/_default) —
// and says, as containerd's resolver would, which hosts a pull of an image tries, in order:
// every [host."…"] table with the capability the request needs (resolve for a tag, pull for
// a digest), then the registry given by server (the image's own registry when server is not
// set).
//
// It follows github.com/containerd/containerd/v2 core/remotes/docker/config (hosts.go:
// HostDirFromRoot and hostPaths for the directory, parseHostsFile, parseHostConfig and
// getSortedHosts for the file; ConfigureHosts for the default host) and
// core/remotes/docker/resolver.go (Resolve: hosts filtered by capability, each tried in order
// on any failure or 404). That package is not imported: it pulls containerd's whole remote
// client (docker.RegistryHost carries an http.Client and an authorizer) and newer versions
// of libraries pullgate shares with Kubernetes; the file format is small and is parsed here
// with the TOML library containerd uses, github.com/pelletier/go-toml/v2, its unstable
// parser giving the order of the [host] tables as containerd's getSortedHosts does.
//
// What pullgate cannot do as containerd does is said on the Endpoint: a host with a path
// other than /v2 (a mirror behind a path prefix, override_path) cannot be asked with
// go-containerregistry and is marked Unsupported; a host's ca, client and header settings
// are not applied (its answers then may fail, which is never a verdict); skip_verify is
// reported, not honoured (pullgate does not skip TLS verification).
package registryhosts
