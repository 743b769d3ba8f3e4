package harness

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The real node leaves state outside any process: mounts (container root filesystems, network
// namespaces), a Linux bridge per node, cgroups, the kubelet's symlinks in /var/log/containers,
// and processes that are not the harness's children (containerd's shims and the containers
// they run, envtest's kube-apiserver and etcd, which it starts in their own process groups).
// A harness that dies — Ctrl-C, a test timeout, SIGKILL — runs no deferred code, so the clean
// up is done by a reaper: the test binary (or the demo) started again in a session of its own,
// which waits for the harness to close a pipe (or die, which closes it too) and then removes
// everything under the run directory and everything the run directory's records name.
//
// Everything the harness starts names the run directory in its command line (a data
// directory, a socket, a config file), so "ours" is decided by that unique path, never by a
// process name.

const reaperEnv = "PULLGATE_E2E_REAPER_DIR"

// Records in the run directory that tell the reaper what lives outside it.
const (
	recordCgroups = "teardown-cgroups" // one cgroup path (relative to each hierarchy) a line
	recordLinks   = "teardown-links"   // one network interface a line
	recordLogDir  = "teardown-logdir"  // present when the harness created /var/log/containers
)

// RunReaperIfAsked must be the first call of TestMain and of the demo's main. In the reaper
// process it waits for the harness to go, cleans up, and exits; elsewhere it returns at once.
func RunReaperIfAsked() {
	dir := os.Getenv(reaperEnv)
	if dir == "" {
		return
	}
	_, _ = io.Copy(io.Discard, os.Stdin) // returns when the harness closes the pipe or dies
	log, err := os.OpenFile(filepath.Join(dir, "reaper.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		log = os.Stderr
	}
	if err := teardown(dir, log); err != nil {
		fmt.Fprintln(log, "reaper:", err)
		// Keep the account of what could not be removed where the next person looks.
		if b, rerr := os.ReadFile(filepath.Join(dir, "reaper.log")); rerr == nil {
			_ = os.WriteFile(dir+".reaper.log", b, 0o600)
		}
	}
	os.Exit(0)
}

// startReaper starts the reaper for dir and returns the pipe to close when the harness has
// cleaned up itself (the reaper then finds nothing left).
func startReaper(dir string) (*os.File, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("finding the test binary for the reaper: %w", err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), reaperEnv+"="+dir)
	cmd.Stdin = r
	// Not the harness's stdout: `go test` waits for every holder of its pipe to close it.
	cmd.Stdout, cmd.Stderr = nil, nil
	// Its own session: Ctrl-C reaches the harness's process group, not the reaper.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		w.Close()
		return nil, fmt.Errorf("starting the reaper: %w", err)
	}
	go func() { _ = cmd.Wait() }()
	return w, nil
}

// record appends a line to one of the run directory's teardown records, before the thing it
// names is made.
func record(dir, file, line string) error {
	f, err := os.OpenFile(filepath.Join(dir, file), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = fmt.Fprintln(f, line)
	return err
}

func readRecord(dir, file string) []string {
	b, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil {
		return nil
	}
	return strings.Fields(string(b))
}

// teardown removes everything the run in dir made: processes, mounts, links, cgroups, log
// symlinks, then dir itself (unless KEEP_E2E_DIR is set). It is idempotent and goes on past
// failures, reporting them together.
func teardown(dir string, log io.Writer) error {
	dir = filepath.Clean(dir)
	if !strings.HasPrefix(filepath.Base(dir), "pullgate-e2e-") {
		return fmt.Errorf("refusing to tear down %q: not a harness run directory", dir)
	}
	var problems []string
	cgroups := readRecord(dir, recordCgroups)

	// Processes: everything that names dir, and everything in the run's cgroups (the
	// containers), until none is left: a kubelet or containerd killed in the same sweep cannot
	// start another.
	var shimSockets []string
	for attempt := 0; ; attempt++ {
		pids := ourProcesses(dir, cgroups)
		if len(pids) == 0 {
			break
		}
		for _, pid := range pids {
			shimSockets = append(shimSockets, shimSocketsOf(pid)...)
		}
		if attempt == 50 {
			problems = append(problems, fmt.Sprintf("processes still alive after 10s: %v", pids))
			break
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// A shim killed does not remove its socket.
	for _, sock := range shimSockets {
		_ = os.Remove(sock)
	}

	// Mounts under dir, deepest first (container root filesystems, network namespaces, the
	// kubelet's volumes).
	for attempt := 0; attempt < 5; attempt++ {
		mounts := mountsUnder(dir)
		if len(mounts) == 0 {
			break
		}
		for _, m := range mounts {
			if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil && attempt == 4 {
				problems = append(problems, fmt.Sprintf("unmounting %s: %v", m, err))
			}
		}
	}

	for _, link := range readRecord(dir, recordLinks) {
		if _, err := os.Stat(filepath.Join("/sys/class/net", link)); err != nil {
			continue
		}
		if out, err := exec.Command("ip", "link", "delete", link).CombinedOutput(); err != nil {
			problems = append(problems, fmt.Sprintf("deleting link %s: %v: %s", link, err, bytes.TrimSpace(out)))
		}
	}

	for _, cg := range cgroups {
		for _, root := range cgroupHierarchies() {
			path := filepath.Join(root, cg)
			if err := removeCgroupTree(path); err != nil {
				problems = append(problems, err.Error())
			}
		}
	}

	// The kubelet links every container's log into /var/log/containers (legacyContainerLogsDir
	// in pkg/kubelet/kuberuntime/legacy.go, not configurable).
	const legacyLogs = "/var/log/containers"
	if entries, err := os.ReadDir(legacyLogs); err == nil {
		for _, e := range entries {
			p := filepath.Join(legacyLogs, e.Name())
			if target, err := os.Readlink(p); err == nil && strings.HasPrefix(target, dir+"/") {
				_ = os.Remove(p)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(dir, recordLogDir)); err == nil {
		_ = os.Remove(legacyLogs) // only if empty: another run may still use it
	}

	if os.Getenv("KEEP_E2E_DIR") == "" {
		if err := os.RemoveAll(dir); err != nil {
			problems = append(problems, fmt.Sprintf("removing %s: %v", dir, err))
		}
	}
	if len(problems) > 0 {
		fmt.Fprintln(log, strings.Join(problems, "\n"))
		return fmt.Errorf("teardown of %s left %d problems", dir, len(problems))
	}
	return nil
}

// ourProcesses lists the processes whose command line names dir, and those in the run's
// cgroups, never this process.
func ourProcesses(dir string, cgroups []string) []int {
	self := os.Getpid()
	var pids []int
	add := func(pid int) {
		if pid != self && pid > 1 && !slices.Contains(pids, pid) {
			pids = append(pids, pid)
		}
	}
	entries, _ := os.ReadDir("/proc")
	needle := []byte(dir + "/")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && bytes.Contains(cmdline, needle) {
			add(pid)
		}
	}
	for _, cg := range cgroups {
		for _, root := range cgroupHierarchies() {
			_ = filepath.WalkDir(filepath.Join(root, cg), func(p string, d os.DirEntry, err error) error {
				if err != nil || d.IsDir() || d.Name() != "cgroup.procs" {
					return nil
				}
				b, _ := os.ReadFile(p)
				for _, f := range strings.Fields(string(b)) {
					if pid, err := strconv.Atoi(f); err == nil {
						add(pid)
					}
				}
				return nil
			})
		}
	}
	return pids
}

// shimSocketsOf returns the sockets a containerd shim (containerd-shim-runc-v2 -namespace NS
// -id ID -address ADDRESS) listens on, named as containerd 1.6 and 2.x both name them, under a
// directory the run does not own: /run/containerd/s/sha256(ADDRESS/NS/ID), and its debug
// socket (pkg/shim/util_unix.go SocketAddress).
func shimSocketsOf(pid int) []string {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	if err != nil || !bytes.Contains(b, []byte("containerd-shim")) {
		return nil
	}
	args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
	flag := func(name string) string {
		for i, a := range args {
			if (a == "-"+name || a == "--"+name) && i+1 < len(args) {
				return args[i+1]
			}
		}
		return ""
	}
	ns, id, address := flag("namespace"), flag("id"), flag("address")
	if ns == "" || id == "" || address == "" {
		return nil
	}
	var out []string
	for _, p := range []string{filepath.Join(address, ns, id), filepath.Join(address, ns, id, "debug")} {
		out = append(out, fmt.Sprintf("/run/containerd/s/%x", sha256.Sum256([]byte(p))))
	}
	return out
}

// mountsUnder lists the mount points below dir, deepest first.
func mountsUnder(dir string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMountPath(fields[4])
		if strings.HasPrefix(mp, dir+"/") || mp == dir {
			out = append(out, mp)
		}
	}
	slices.SortFunc(out, func(a, b string) int { return strings.Count(b, "/") - strings.Count(a, "/") })
	return slices.Compact(out)
}

// unescapeMountPath undoes the octal escapes of /proc/self/mountinfo (\040 for a space).
func unescapeMountPath(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// cgroupHierarchies returns the mount points of the host's cgroup hierarchies: each v1
// controller's, and the unified (v2) one.
func cgroupHierarchies() []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		line := s.Text()
		_, after, ok := strings.Cut(line, " - ")
		if !ok {
			continue
		}
		fstype := strings.Fields(after)
		if len(fstype) == 0 || (fstype[0] != "cgroup" && fstype[0] != "cgroup2") {
			continue
		}
		out = append(out, unescapeMountPath(strings.Fields(line)[4]))
	}
	return out
}

// removeCgroupTree removes a cgroup and its children, deepest first; a cgroup whose
// processes have just been killed may take a moment to empty.
func removeCgroupTree(path string) error {
	if _, err := os.Stat(path); err != nil {
		return nil
	}
	var dirs []string
	_ = filepath.WalkDir(path, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	slices.Reverse(dirs)
	for _, d := range dirs {
		var err error
		for attempt := 0; attempt < 25; attempt++ {
			if err = syscall.Rmdir(d); err == nil || os.IsNotExist(err) {
				err = nil
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		if err != nil {
			return fmt.Errorf("removing cgroup %s: %v", d, err)
		}
	}
	return nil
}
