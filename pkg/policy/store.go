package policy

import "sync/atomic"

// Store holds the policy in force. Load is safe to call from any number of admissions while
// Set replaces the policy; a policy, once given to Set, must not be modified, and one
// returned by Load must be treated as read-only.
type Store struct {
	cur atomic.Pointer[snapshot]
}

type snapshot struct {
	policy  *Policy
	version uint64
}

// NewStore returns a store holding initial, or Default() when initial is nil, at version 0.
func NewStore(initial *Policy) *Store {
	if initial == nil {
		initial = Default()
	}
	s := &Store{}
	s.cur.Store(&snapshot{policy: initial})
	return s
}

// Load returns the policy in force. It is never nil.
func (s *Store) Load() *Policy {
	return s.cur.Load().policy
}

// Set puts p in force and increments the version. A nil p is ignored.
func (s *Store) Set(p *Policy) {
	if p == nil {
		return
	}
	for {
		old := s.cur.Load()
		if s.cur.CompareAndSwap(old, &snapshot{policy: p, version: old.version + 1}) {
			return
		}
	}
}

// Version counts the Set calls since NewStore: it changes exactly when a new policy is put in
// force, so tests and probes can tell a reload happened.
func (s *Store) Version() uint64 {
	return s.cur.Load().version
}
