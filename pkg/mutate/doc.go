// Package mutate fixes, at creation, what would make a Pod's pulls fail or drift, instead of
// only reporting it: causes 2 (missing credentials) and 6 (Docker Hub rate limits) of
// pullgate's design. Every mutation is off unless the policy's mutations.enabled turns it on.
//
// The mutations, in the order they are applied to one Pod:
//
//  1. Mirror rewrite: an image of a registry a mirror rule names (say docker.io; short names
//     are normalised as the container runtime does, so "nginx" is
//     index.docker.io/library/nginx) is rewritten to the first of the rule's mirrors that has
//     it. For a tag the origin is asked first: when it names a digest, a mirror qualifies
//     only if its tag names the same digest (a mirror that has not caught up with a push
//     would run other bytes); when the origin gives none (it fails, rate limits, refuses
//     the pod's credentials or lacks the tag), a mirror that has the tag qualifies if it
//     has the platforms the pod needs (the os/arch of the nodes it may be scheduled on,
//     when those are known). A digest stays a digest (mirror/repo@sha256:…), a tag stays a
//     tag. When no mirror qualifies the original is kept and an admission warning says why.
//     The mirror is asked with the pod's own credentials for the mirror host (or those a
//     pull-secret rule would add), else anonymously.
//  2. Pull-secret injection: when the pod has no credential for the registry of one of its
//     images (after step 1) and a pull-secret rule names a secret for that registry that
//     exists in the pod's namespace and holds a credential for it, the secret is appended to
//     spec.imagePullSecrets. If the pod listed none, the ServiceAccount's pull secrets are
//     copied into the list first: the ServiceAccount admission plugin fills imagePullSecrets
//     from the ServiceAccount only when the pod lists none, so a list holding just the added
//     secret would silently drop the ServiceAccount's (the plugin normally runs before
//     webhooks, but it is also reinvoked after them, and may be off). pullgate never creates
//     or copies secrets: the secret must already be in the pod's namespace.
//  3. Digest pinning (pinDigests): image:tag becomes image:tag@sha256:…, the digest the tag
//     names now, looked up with the pod's own credentials, so every node runs the same bytes.
//
// The mirror rewrite and pinning write what a registry says into the pod, so they look up
// with lookup.WithFresh: an answer the registry cache holds is used only while it is younger
// than the cache's burst window (a couple of seconds), so a push is seen by the next pods
// while a burst of pods still shares one request. References to registries the policy lists
// in registries.insecure are parsed with name.Insecure, as the checks parse them.
//
// Every container whose image changed is recorded in the annotation
// pullgate.io/original-images, a JSON object from container name to the image as first
// written. Containers with imagePullPolicy Never (nothing is pulled) and images matching the
// policy's exemptImages are left alone.
//
// Only Pods are mutated, and only at CREATE — never the pod templates of Deployments,
// StatefulSets, Jobs and the like. GitOps tools (Argo CD, Flux) compare the live workload with
// the one in Git; a webhook that rewrote templates would make them differ forever, and the
// tool would re-apply and the webhook rewrite again without end. Pods belong to their
// controllers, not to Git, so rewriting them causes no drift. Updates are left alone: an
// image edited on a live pod is its author's explicit choice.
//
// Mutations are idempotent: a pod already on a mirror is not rewritten again, a digest is not
// pinned again, and a secret is not added when the pod already has a credential, so a second
// pass (reinvocationPolicy: IfNeeded) changes nothing. The validating webhook runs after every
// mutating webhook and so checks the mutated pod: a rewrite to a mirror that lacks the image
// could not slip through even if it were made.
//
// Mutate changes a typed *corev1.Pod; pkg/webhook turns the change into a JSON patch with
// controller-runtime's admission.PatchResponseFromRaw. Lookups that fail never fail the
// admission: the mutation is skipped and the Result says why.
package mutate
