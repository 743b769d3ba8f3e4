package harness

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// The real node: kube-controller-manager and kube-scheduler for the cluster, and per node a
// containerd of its own (root, state, sockets, CNI config, registry hosts directory all under
// the run directory) driven by a kubelet of its own (ports, cgroup root, pod CIDR, Linux
// bridge). Images come from the run's loopback registries only; the sandbox image is the
// run's testapp image.
//
// What this host needs and why (found running it; see also shared/real-node notes):
//   - the host has cgroup v1: kubelet 1.37 refuses it unless failCgroupV1 is false; the
//     cgroupfs driver (no systemd), and the cgroup root made beforehand in every hierarchy.
//   - no swap checks, no iptables chains (makeIPTablesUtilChains: false), no kube-proxy.
//   - kube-controller-manager must run: it removes the not-ready taint, creates the "default"
//     ServiceAccounts and publishes kube-root-ca.crt, without which pods do not start.
//   - the bridge is made by the harness with the node's gateway address, and the CNI bridge
//     plugin is told isGateway: false, so that the host reaches pods without the plugin turning
//     on IP forwarding for the whole host.

// NodeInfo describes a real node of the environment.
type NodeInfo struct {
	Name string
	// Runtime is the container runtime as the node reports it (containerd://1.6.20…).
	Runtime string
}

// NoKubeletTaint is on the Node objects of other architectures that have no kubelet: no real
// pod may ever be bound to them.
const NoKubeletTaint = "pullgate.io/e2e-no-kubelet"

// realNode is one kubelet + containerd.
type realNode struct {
	name       string
	dir        string
	containerd string // the containerd binary
	cgroupRoot string
	bridge     string
	// The pod network is 10.<base>.<subnet>.0/24: base tells the run's nodes apart, subnet
	// (from the run ID) concurrent runs.
	base, subnet int
	kubeletPort,
	healthzPort int
	// extraKubeletArgs are more kubelet flags (the credential provider's, credprov.go).
	extraKubeletArgs []string
}

// cluster is the run's controllers and nodes.
type cluster struct {
	dir   string
	runID string
	ca    string // the API server's CA, for the kubelet and kube-root-ca.crt
	runc  string // the runc binary
	// serviceCIDR is the Service network the API server and the controller manager share.
	serviceCIDR string
	procs       []*exec.Cmd
	nodes       []*realNode
	logs        io.Writer
	// stopHeartbeats ends the heartbeats of Node objects without a kubelet.
	stopHeartbeats context.CancelFunc
}

func newRunID() string {
	b := make([]byte, 2)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// configureAPIServer sets what a cluster with a kubelet needs and envtest leaves out: the Node
// authorizer and NodeRestriction (the kubelet's credentials are a node's), and the
// ServiceAccount admission plugin, which envtest disables but every real cluster runs (it
// gives pods their token and copies the ServiceAccount's imagePullSecrets into the pod).
func configureAPIServer(env *envtest.Environment, dir, serviceCIDR string) error {
	api := env.ControlPlane.GetAPIServer()
	api.CertDir = filepath.Join(dir, "apiserver")
	if err := os.MkdirAll(api.CertDir, 0o700); err != nil {
		return err
	}
	args := api.Configure()
	args.Set("authorization-mode", "Node,RBAC")
	args.Disable("disable-admission-plugins")
	args.Set("enable-admission-plugins", "NodeRestriction,ServiceAccount")
	args.Set("service-cluster-ip-range", serviceCIDR)
	// Without kube-proxy, Service IPs lead nowhere: the API server calls webhooks (and
	// aggregated APIs) at an endpoint of the Service instead, a pod IP on a node's bridge.
	// The same resolver serves both (cmd/kube-apiserver/app/server.go buildServiceResolver;
	// pkg/controlplane/apiserver/admission/config.go webhookinit.NewPluginInitializer).
	args.Set("enable-aggregator-routing", "true")
	if env.ControlPlane.Etcd == nil {
		env.ControlPlane.Etcd = &envtest.Etcd{}
	}
	env.ControlPlane.Etcd.DataDir = filepath.Join(dir, "etcd")
	return os.MkdirAll(env.ControlPlane.Etcd.DataDir, 0o700)
}

// kubeconfigFor writes a kubeconfig for a user with a client certificate of the API server's
// client CA, as kubeadm does for the control plane's components.
func kubeconfigFor(env *envtest.Environment, dir, file, user string, groups ...string) (string, error) {
	u, err := env.AddUser(envtest.User{Name: user, Groups: groups}, nil)
	if err != nil {
		return "", fmt.Errorf("adding user %s: %w", user, err)
	}
	b, err := u.KubeConfig()
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "pki", file)
	return path, os.WriteFile(path, b, 0o600)
}

func (c *cluster) start(name string, cmd *exec.Cmd) error {
	cmd.Stdout, cmd.Stderr = prefixed(c.logs, name), prefixed(c.logs, name)
	cmd.SysProcAttr = dieWithParent()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", name, err)
	}
	c.procs = append(c.procs, cmd)
	return nil
}

// startControllers runs kube-controller-manager and kube-scheduler against the API server.
func (c *cluster) startControllers(env *envtest.Environment, bin string) error {
	api := env.ControlPlane.GetAPIServer()
	kcm, err := kubeconfigFor(env, c.dir, "kcm.kubeconfig", "system:kube-controller-manager")
	if err != nil {
		return err
	}
	sched, err := kubeconfigFor(env, c.dir, "scheduler.kubeconfig", "system:kube-scheduler")
	if err != nil {
		return err
	}
	kcmPort, err := freePort()
	if err != nil {
		return err
	}
	schedPort, err := freePort()
	if err != nil {
		return err
	}
	if err := c.start("kube-controller-manager", exec.Command(filepath.Join(bin, "kube-controller-manager"),
		"--kubeconfig="+kcm, "--authentication-kubeconfig="+kcm, "--authorization-kubeconfig="+kcm,
		"--bind-address=127.0.0.1", fmt.Sprintf("--secure-port=%d", kcmPort), "--leader-elect=false",
		"--service-account-private-key-file="+filepath.Join(api.CertDir, "sa-signer.key"),
		"--root-ca-file="+c.ca, "--use-service-account-credentials=true",
		"--service-cluster-ip-range="+c.serviceCIDR,
		// A node without a kubelet answers no health checks; the harness keeps its Lease fresh.
		"--v=1",
	)); err != nil {
		return err
	}
	return c.start("kube-scheduler", exec.Command(filepath.Join(bin, "kube-scheduler"),
		"--kubeconfig="+sched, "--authentication-kubeconfig="+sched, "--authorization-kubeconfig="+sched,
		"--bind-address=127.0.0.1", fmt.Sprintf("--secure-port=%d", schedPort), "--leader-elect=false", "--v=1",
	))
}

// newRealNode prepares (but does not start) node number n.
func (c *cluster) newRealNode(n int, name, containerdBin string) (*realNode, error) {
	kubeletPort, err := freePort()
	if err != nil {
		return nil, err
	}
	healthzPort, err := freePort()
	if err != nil {
		return nil, err
	}
	subnet := 0
	if b, err := hex.DecodeString(c.runID); err == nil {
		subnet = int(b[0])
	}
	node := &realNode{
		name:        name,
		dir:         filepath.Join(c.dir, "nodes", name),
		containerd:  containerdBin,
		cgroupRoot:  fmt.Sprintf("/pullgate-e2e-%s-%d", c.runID, n),
		bridge:      fmt.Sprintf("pge2e%s%d", c.runID, n),
		base:        200 + n,
		subnet:      subnet,
		kubeletPort: kubeletPort,
		healthzPort: healthzPort,
	}
	return node, os.MkdirAll(node.dir, 0o755)
}

func (n *realNode) podCIDR() string { return fmt.Sprintf("10.%d.%d.0/24", n.base, n.subnet) }
func (n *realNode) gateway() string { return fmt.Sprintf("10.%d.%d.1/24", n.base, n.subnet) }

// startNode starts containerd and the kubelet of node.
func (c *cluster) startNode(ctx context.Context, env *envtest.Environment, bin, sandboxImage string, node *realNode) error {
	d := node.dir
	for _, sub := range []string{"containerd", "cni/net.d", "certs.d", "kubelet", "pods-logs"} {
		if err := os.MkdirAll(filepath.Join(d, sub), 0o755); err != nil {
			return err
		}
	}
	sock := filepath.Join(d, "containerd", "containerd.sock")
	config := fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = %[3]q
[ttrpc]
  address = %[4]q
[debug]
  level = "info"
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %[5]q
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  restrict_oom_score_adj = true
  disable_apparmor = true
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = %[9]q
        SystemdCgroup = false
        # runc's state of the containers, under the run's state (default /run/containerd/runc).
        Root = %[10]q
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %[6]q
    conf_dir = %[7]q
    max_conf_num = 1
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = %[8]q
`, filepath.Join(d, "containerd", "root"), filepath.Join(d, "containerd", "state"), sock, sock+".ttrpc",
		sandboxImage, cniBinDir, filepath.Join(d, "cni", "net.d"), filepath.Join(d, "certs.d"), c.runc, filepath.Join(d, "containerd", "state", "runc"))
	cfgPath := filepath.Join(d, "containerd", "config.toml")
	if err := os.WriteFile(cfgPath, []byte(config), 0o600); err != nil {
		return err
	}
	cni := fmt.Sprintf(`{
  "cniVersion": "0.4.0",
  "name": "pullgate-e2e",
  "plugins": [{
    "type": "bridge",
    "bridge": %q,
    "isGateway": false,
    "ipMasq": false,
    "hairpinMode": false,
    "ipam": {"type": "host-local", "dataDir": %q, "ranges": [[{"subnet": %q}]], "routes": [{"dst": "0.0.0.0/0"}]}
  }]
}
`, node.bridge, filepath.Join(d, "cni", "ipam"), node.podCIDR())
	if err := os.WriteFile(filepath.Join(d, "cni", "net.d", "10-bridge.conflist"), []byte(cni), 0o600); err != nil {
		return err
	}
	if err := c.makeBridge(node); err != nil {
		return err
	}
	if err := c.makeCgroupRoot(node.cgroupRoot); err != nil {
		return err
	}

	ctrd := exec.Command(node.containerd, "--config", cfgPath)
	// The shim is found next to containerd or on PATH: the one of the same build first.
	ctrd.Env = append(os.Environ(), "PATH="+filepath.Dir(node.containerd)+":"+os.Getenv("PATH"))
	if err := c.start("containerd["+node.name+"]", ctrd); err != nil {
		return err
	}
	if err := waitFor(ctx, 30*time.Second, func() bool {
		conn, err := net.Dial("unix", sock)
		if err == nil {
			conn.Close()
		}
		return err == nil
	}); err != nil {
		return fmt.Errorf("containerd of %s did not listen on %s: %w", node.name, sock, err)
	}

	kubeconfig, err := kubeconfigFor(env, c.dir, "kubelet-"+node.name+".kubeconfig", "system:node:"+node.name, "system:nodes")
	if err != nil {
		return err
	}
	kubeletConfig := fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: %[1]s
cgroupsPerQOS: true
enforceNodeAllocatable: ["pods"]
containerRuntimeEndpoint: unix://%[2]s
imageServiceEndpoint: unix://%[2]s
runtimeRequestTimeout: 2m
serializeImagePulls: false
failSwapOn: false
makeIPTablesUtilChains: false
address: 127.0.0.1
port: %[3]d
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: %[4]d
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: %[5]s}
authorization:
  mode: AlwaysAllow
resolvConf: /etc/resolv.conf
staticPodPath: ""
registerNode: true
podCIDR: %[6]s
hairpinMode: none
podLogsDir: %[7]s
evictionHard:
  memory.available: "100Mi"
  nodefs.available: "1%%"
  imagefs.available: "1%%"
  nodefs.inodesFree: "1%%"
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
localStorageCapacityIsolation: true
`, node.cgroupRoot, sock, node.kubeletPort, node.healthzPort, c.ca, node.podCIDR(), filepath.Join(d, "pods-logs"))
	kcPath := filepath.Join(d, "kubelet-config.yaml")
	if err := os.WriteFile(kcPath, []byte(kubeletConfig), 0o600); err != nil {
		return err
	}
	if _, err := os.Stat("/var/log/containers"); errors.Is(err, os.ErrNotExist) {
		if err := record(c.dir, recordLogDir, "/var/log/containers"); err != nil {
			return err
		}
	}
	kubelet := exec.Command(filepath.Join(bin, "kubelet"),
		"--config="+kcPath, "--kubeconfig="+kubeconfig,
		"--root-dir="+filepath.Join(d, "kubelet"), "--cert-dir="+filepath.Join(d, "kubelet", "pki"),
		"--hostname-override="+node.name, "--v=1",
	)
	kubelet.Args = append(kubelet.Args, node.extraKubeletArgs...)
	return c.start("kubelet["+node.name+"]", kubelet)
}

// cniBinDir is where Debian's containernetworking-plugins are.
const cniBinDir = "/usr/lib/cni"

// makeBridge creates the node's bridge with its gateway address, so the host reaches pods.
func (c *cluster) makeBridge(node *realNode) error {
	if err := record(c.dir, recordLinks, node.bridge); err != nil {
		return err
	}
	for _, args := range [][]string{
		{"link", "add", node.bridge, "type", "bridge"},
		{"addr", "add", node.gateway(), "dev", node.bridge},
		{"link", "set", node.bridge, "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, out)
		}
	}
	return nil
}

// makeCgroupRoot creates the kubelet's cgroup root in every hierarchy: on cgroup v1 the
// kubelet requires it to exist in each, and a cpuset child needs its cpus and mems set.
func (c *cluster) makeCgroupRoot(root string) error {
	if err := record(c.dir, recordCgroups, root); err != nil {
		return err
	}
	for _, h := range cgroupHierarchies() {
		if filepath.Base(h) == "unified" {
			continue // the empty v2 hierarchy of a hybrid host
		}
		p := filepath.Join(h, root)
		if err := os.MkdirAll(p, 0o755); err != nil {
			return fmt.Errorf("creating cgroup %s: %w", p, err)
		}
		if filepath.Base(h) == "cpuset" {
			for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
				b, err := os.ReadFile(filepath.Join(h, f))
				if err != nil {
					return err
				}
				if err := os.WriteFile(filepath.Join(p, f), b, 0o644); err != nil {
					return fmt.Errorf("writing %s: %w", filepath.Join(p, f), err)
				}
			}
		}
	}
	return nil
}

// stop ends the controllers and nodes (the teardown removes what they leave).
func (c *cluster) stop() {
	if c.stopHeartbeats != nil {
		c.stopHeartbeats()
	}
	for i := len(c.procs) - 1; i >= 0; i-- {
		p := c.procs[i]
		if p.Process == nil {
			continue
		}
		_ = p.Process.Signal(os.Interrupt)
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, p := range c.procs {
		done := make(chan struct{})
		go func() { _ = p.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(time.Until(deadline)):
			_ = p.Process.Kill()
			<-done
		}
	}
	c.procs = nil
}

// fakeNode creates a Ready Node object of another platform without a kubelet, tainted so that
// nothing is ever bound to it, and keeps it Ready by renewing its Lease as a kubelet would.
func fakeNode(ctx context.Context, e *Env, name, arch string, tainted bool) error {
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{
			corev1.LabelOSStable: "linux", corev1.LabelArchStable: arch, corev1.LabelHostname: name,
		}},
	}
	if tainted {
		node.Spec.Taints = []corev1.Taint{{Key: NoKubeletTaint, Value: "true", Effect: corev1.TaintEffectNoSchedule}}
	}
	created, err := e.Client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("creating node %s: %w", name, err)
	}
	// The node controllers write the new Node too (taints, CIDR): read it again on a
	// conflict.
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n, err := e.Client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue,
			LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now(), Reason: "KubeletReady"}}
		n.Status.NodeInfo = corev1.NodeSystemInfo{OperatingSystem: "linux", Architecture: arch,
			ContainerRuntimeVersion: "containerd://1.6.20", KubeletVersion: "v1.37.2"}
		_, err = e.Client.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("marking node %s ready: %w", name, err)
	}
	return renewLease(ctx, e, created)
}

// renewLease creates or renews the node's Lease in kube-node-lease: the node lifecycle
// controller takes a renewed Lease as the node's heartbeat.
func renewLease(ctx context.Context, e *Env, node *corev1.Node) error {
	leases := e.Client.CoordinationV1().Leases(corev1.NamespaceNodeLease)
	now := metav1.NewMicroTime(time.Now())
	lease, err := leases.Get(ctx, node.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = leases.Create(ctx, &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: node.Name, OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "v1", Kind: "Node", Name: node.Name, UID: node.UID}}},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To(node.Name), LeaseDurationSeconds: ptr.To[int32](40), RenewTime: &now},
		}, metav1.CreateOptions{})
		return err
	}
	if err != nil {
		return err
	}
	lease.Spec.RenewTime = &now
	_, err = leases.Update(ctx, lease, metav1.UpdateOptions{})
	return err
}

// heartbeat renews the Leases of nodes without a kubelet every 10 s until ctx ends.
func heartbeat(ctx context.Context, e *Env, names []string) {
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, name := range names {
			node, err := e.Client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
			if err == nil {
				_ = renewLease(ctx, e, node)
			}
		}
	}
}

// waitNodeReady waits until the kubelet registered the node, it is Ready and the controller
// manager removed its not-ready taint.
func waitNodeReady(ctx context.Context, e *Env, name string) error {
	return waitFor(ctx, 90*time.Second, func() bool {
		n, err := e.Client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false
		}
		ready := false
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				ready = true
			}
		}
		for _, t := range n.Spec.Taints {
			if t.Key == corev1.TaintNodeNotReady || t.Key == corev1.TaintNodeUnreachable {
				return false
			}
		}
		return ready
	})
}

// prefixed writes each line of a component's output to w behind its name.
func prefixed(w io.Writer, name string) io.Writer {
	return &linePrefixer{w: w, prefix: "[" + name + "] "}
}

type linePrefixer struct {
	mu      sync.Mutex
	w       io.Writer
	prefix  string
	pending []byte
}

func (l *linePrefixer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.pending = append(l.pending, p...)
	for {
		i := bytes.IndexByte(l.pending, '\n')
		if i < 0 {
			return len(p), nil
		}
		if _, err := fmt.Fprintf(l.w, "%s%s\n", l.prefix, l.pending[:i]); err != nil {
			return len(p), err
		}
		l.pending = l.pending[i+1:]
	}
}
