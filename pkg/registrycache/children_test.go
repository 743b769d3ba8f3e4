package registrycache_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/pullgate/pullgate/internal/testregistry"
	"github.com/pullgate/pullgate/pkg/lookup"
	"github.com/pullgate/pullgate/pkg/registrycache"
)

// TestChildren: an index's entries as the runtimes choose among them (entries without a
// platform and attestations kept, CRI-O's zstd marker kept), from the manifest Resolve
// already fetched, and nothing for an image.
func TestChildren(t *testing.T) {
	reg := testregistry.New(t)
	amd := &v1.Platform{OS: "linux", Architecture: "amd64"}
	idx, children := reg.PushIndexOf(t, "p/idx", "v1",
		testregistry.Entry{Platform: amd, Annotations: map[string]string{"io.github.containers.compression.zstd": "true", "other": "dropped"}},
		testregistry.Entry{OS: "linux", Arch: "arm64"},
		testregistry.Entry{Platform: &v1.Platform{OS: "unknown", Architecture: "unknown"}, OS: "linux", Arch: "amd64"},
	)
	img := reg.PushImage(t, "p/img", "v1", "linux", "amd64")
	c := registrycache.New(registrycache.WithDialPolicy(registrycache.DialPolicy{AllowLoopback: true}))
	ctx := lookup.WithPlatformsWanted(t.Context())

	tag, err := name.ParseReference(reg.Ref("p/idx", ":v1"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Resolve(ctx, tag, authn.Anonymous); err != nil {
		t.Fatalf("Resolve: %v", err)
	}
	reg.Reset()
	got, err := c.Children(ctx, tag.Context().Digest(idx.String()), authn.Anonymous)
	if err != nil {
		t.Fatalf("Children: %v", err)
	}
	if n := reg.TotalRequests(); n != 0 {
		t.Errorf("Children after Resolve's GET sent %d requests, want 0", n)
	}
	var digests []v1.Hash
	for _, d := range got {
		digests = append(digests, d.Digest)
	}
	if diff := cmp.Diff(children, digests); diff != "" {
		t.Errorf("children (-want +got):\n%s", diff)
	}
	if got[0].Platform == nil || !got[0].Platform.Equals(*amd) || got[1].Platform != nil || got[2].Platform.OS != "unknown" {
		t.Errorf("platforms not as listed: %+v", got)
	}
	if diff := cmp.Diff(map[string]string{"io.github.containers.compression.zstd": "true"}, got[0].Annotations); diff != "" {
		t.Errorf("annotations (-want +got):\n%s", diff)
	}

	imgRef, err := name.NewDigest(reg.Ref("p/img", "@"+img.String()))
	if err != nil {
		t.Fatal(err)
	}
	none, err := c.Children(ctx, imgRef, authn.Anonymous)
	if err != nil || len(none) != 0 {
		t.Errorf("Children of an image = %v, %v; want none", none, err)
	}
	missing, _ := name.NewDigest(reg.Ref("p/idx", "@"+children[0].String()))
	reg.DeleteManifest(t, "p/idx", children[0])
	if _, err := c.Children(ctx, missing, authn.Anonymous); lookup.KindOf(err) != lookup.KindManifestUnknown {
		t.Errorf("Children of a deleted manifest: %v, want manifest unknown", err)
	}
}
