package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// Namespace the benchmark's pods are admitted in, and the pull secret they list.
const (
	benchNamespace  = "bench"
	benchPullSecret = "regcred"
)

// cluster is a running kube-apiserver and etcd (envtest) seeded like a small real cluster.
type cluster struct {
	env        *envtest.Environment
	Kubeconfig string
}

// startCluster starts envtest with the binaries in assets and seeds two Ready nodes
// (linux/amd64, linux/arm64), the bench namespace, its default ServiceAccount and a pull
// secret with an entry for each registry host.
func startCluster(ctx context.Context, assets, dir string, registryHosts []string) (_ *cluster, err error) {
	for _, bin := range []string{"kube-apiserver", "etcd"} {
		if _, err := os.Stat(filepath.Join(assets, bin)); err != nil {
			return nil, fmt.Errorf("%s not found in %s: run `make tools`", bin, assets)
		}
	}
	c := &cluster{env: &envtest.Environment{BinaryAssetsDirectory: assets}}
	cfg, err := c.env.Start()
	if err != nil {
		return nil, fmt.Errorf("starting kube-apiserver and etcd: %w", err)
	}
	defer func() {
		if err != nil {
			c.Stop()
		}
	}()
	user, err := c.env.AddUser(envtest.User{Name: "bench-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return nil, fmt.Errorf("adding the bench user: %w", err)
	}
	kubeconfig, err := user.KubeConfig()
	if err != nil {
		return nil, err
	}
	c.Kubeconfig = filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(c.Kubeconfig, kubeconfig, 0o600); err != nil {
		return nil, err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}

	for _, arch := range []string{"amd64", "arm64"} {
		node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{
			Name:   "node-" + arch,
			Labels: map[string]string{corev1.LabelOSStable: "linux", corev1.LabelArchStable: arch},
		}}
		created, err := cs.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
		if err != nil {
			return nil, fmt.Errorf("creating node: %w", err)
		}
		created.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue,
			LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now(), Reason: "KubeletReady"}}
		created.Status.NodeInfo = corev1.NodeSystemInfo{OperatingSystem: "linux", Architecture: arch}
		if _, err := cs.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
			return nil, fmt.Errorf("marking node ready: %w", err)
		}
	}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: benchNamespace}}, metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("creating namespace: %w", err)
	}
	if _, err := cs.CoreV1().ServiceAccounts(benchNamespace).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("creating service account: %w", err)
	}
	auths := map[string]any{}
	for _, h := range registryHosts {
		auths[h] = map[string]string{"auth": base64.StdEncoding.EncodeToString([]byte("bench:bench-password"))}
	}
	dockercfg, err := json.Marshal(map[string]any{"auths": auths})
	if err != nil {
		return nil, err
	}
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: benchPullSecret},
		Type:       corev1.SecretTypeDockerConfigJson,
		Data:       map[string][]byte{corev1.DockerConfigJsonKey: dockercfg},
	}
	if _, err := cs.CoreV1().Secrets(benchNamespace).Create(ctx, secret, metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("creating pull secret: %w", err)
	}
	return c, nil
}

// Stop stops kube-apiserver and etcd.
func (c *cluster) Stop() {
	if c.env != nil {
		_ = c.env.Stop()
	}
}
