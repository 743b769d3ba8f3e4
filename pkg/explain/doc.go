// Package explain says why a pod's image pulls fail, for `kubectl pullgate explain`: it reads
// what the kubelet reported (the containers' waiting reasons and messages, the pod's "Failed"
// events), runs pullgate's checks (pkg/validate) with the credentials the kubelet would use
// (pkg/pullsecrets: the pod's pull secrets, else its ServiceAccount's) through the caller's
// own client and RBAC, and puts the two side by side: for each failing container the cause in
// the words of the seven causes of ImagePullBackOff, the evidence, and the fix as commands;
// and where the kubelet and the registry disagree, which side the problem is on.
//
// It implements no check of its own: every verdict comes from validate.Checker.
package explain
