package policy

import (
	"sync"
	"testing"
)

func TestStore(t *testing.T) {
	s := NewStore(nil)
	if s.Load() == nil || s.Load().OnRegistryError != Warn {
		t.Fatalf("NewStore(nil).Load() = %+v, want the default policy", s.Load())
	}
	if v := s.Version(); v != 0 {
		t.Errorf("Version() = %d before any Set, want 0", v)
	}

	p := Default()
	p.OnRegistryError = Enforce
	s.Set(p)
	if s.Load() != p || s.Version() != 1 {
		t.Errorf("after Set: Load() = %p, Version() = %d; want %p, 1", s.Load(), s.Version(), p)
	}
	s.Set(nil)
	if s.Load() != p || s.Version() != 1 {
		t.Errorf("Set(nil) changed the store: Load() = %p, Version() = %d", s.Load(), s.Version())
	}

	initial := Default()
	if got := NewStore(initial).Load(); got != initial {
		t.Errorf("NewStore(p).Load() = %p, want %p", got, initial)
	}
}

func TestStoreConcurrent(t *testing.T) {
	s := NewStore(Default())
	const writers, sets = 4, 200
	var wg sync.WaitGroup
	for range writers {
		wg.Go(func() {
			for range sets {
				s.Set(Default())
			}
		})
	}
	for range 4 {
		wg.Go(func() {
			for range sets {
				if s.Load().ModeFor(CheckExistence, nil) != Enforce {
					t.Error("Load() returned a policy that is not the default")
					return
				}
			}
		})
	}
	wg.Wait()
	if got := s.Version(); got != writers*sets {
		t.Errorf("Version() = %d after %d Sets, want %d", got, writers*sets, writers*sets)
	}
}
