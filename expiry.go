package ghost

// Expiry. A pair with a TTL carries its absolute expiry (unix nanoseconds
// on this node's clock; copies get the time left, hlc.go). Readers treat it
// as gone from that moment and remove it when they meet it; the crawler
// removes the rest every CrawlerInterval, and tombstones older than
// TombstoneTTL. With Config.StaleWhileRevalidate the store keeps an
// expired pair that much longer for GetOrLoad to serve while it reloads
// (load.go); every other read sees it gone at its expiry.

func (e *entry) expired(now int64) bool { return e.expires != 0 && now >= e.expires }

// expiredNow reads the clock only for pairs that can expire: most cache
// reads are of pairs that cannot, and the clock is not free.
func (s *store) expiredNow(e *entry) bool { return e.expires != 0 && e.expired(s.now()) }

// stale returns key's pair in partition p when it has expired less than
// the store's grace ago (a reload may replace it).
func (s *store) stale(p int, key string) ([]byte, bool) {
	e := visible(s.parts[p].load(key))
	if e == nil || e.tombstone || !s.expiredNow(e) || e.expired(s.now()-s.grace) {
		return nil, false
	}
	return e.value, true
}

// expiresOf returns when key's pair in partition p expires, as a reader
// sees it (0: never, or no pair).
func (s *store) expiresOf(p int, key string) int64 {
	if e := visible(s.parts[p].load(key)); e != nil && !e.tombstone {
		return e.expires
	}
	return 0
}

// expire removes e, which a reader found expired, unless a write has
// replaced it meanwhile.
func (s *store) expire(pt *partition, e *entry) {
	pt.mu.Lock()
	defer pt.mu.Unlock()
	if pt.load(e.key) == e {
		s.forget(pt, e)
		s.stats.expired.Add(1)
	}
}

// crawl removes expired pairs, and tombstones older than tombstoneAge
// nanoseconds. It locks one partition at a time, so readers and writers of
// the others never wait for it.
func (s *store) crawl(tombstoneAge int64) (removed int) {
	for i := range s.parts {
		pt := &s.parts[i]
		pt.mu.Lock()
		now := s.now()
		pt.each(func(e *entry) {
			switch {
			case e.tombstone:
				if now-int64(e.version) > tombstoneAge {
					s.forget(pt, e)
				}
			case e.expired(now - s.grace):
				s.forget(pt, e)
				removed++
			}
		})
		pt.mu.Unlock()
	}
	s.stats.expired.Add(uint64(removed))
	return removed
}
