// Command stock is the cache-aside example of the GhostDB user guide,
// getStockData, in Go.
//
// It starts one GhostDB node on 127.0.0.1 and puts it in front of a fake,
// slow database: the first read of each ticker misses the cache and waits for
// the database; the next ones are served from the cache.
//
//	go run ./examples/stock
package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/ghostdb/ghost"
)

// Stock is what the database returns, and what is cached.
type Stock struct {
	Ticker string
	Price  float64
	Volume int64
}

// database stands in for MongoDB, MySQL or whatever holds the data: every
// query takes delay.
type database struct {
	delay time.Duration
}

func (db database) stock(ctx context.Context, ticker string) (Stock, error) {
	select {
	case <-time.After(db.delay):
	case <-ctx.Done():
		return Stock{}, ctx.Err()
	}
	prices := map[string]float64{"AMZN": 3116.42, "GOOG": 1769.21, "MSFT": 214.46}
	p, ok := prices[ticker]
	if !ok {
		return Stock{}, fmt.Errorf("no such ticker %q", ticker)
	}
	return Stock{Ticker: ticker, Price: p, Volume: 4_200_000}, nil
}

// stockTTL is how long a cached quote is served before the database is
// asked again.
const stockTTL = 5 * time.Minute

// getStockData returns the quote for ticker: from the cache when it holds
// one, otherwise from the database, caching the result.
func getStockData(ctx context.Context, cache *ghost.Node, db database, ticker string) (Stock, error) {
	key := "stock:" + ticker

	// Fetch data from the cache.
	it, err := cache.Get(ctx, key)
	fmt.Printf("  get %-10s -> %s\n", key, ghost.Message(ghost.OpGet, err))
	if err == nil {
		var s Stock
		if err := it.Decode(&s); err == nil {
			return s, nil
		}
		// A value we cannot decode (say, written by an older release) is
		// treated as a miss and overwritten below.
	} else if !errors.Is(err, ghost.ErrCacheMiss) {
		// The cache is unreachable: the database still answers, slowly.
		log.Printf("cache: %v", err)
	}

	// CACHE_MISS: fetch from the database.
	s, err := db.stock(ctx, ticker)
	if err != nil {
		return Stock{}, err
	}

	// Store the result in the cache. Failing to cache is not failing to
	// answer: report it and return the data anyway.
	err = cache.Put(ctx, key, s, stockTTL)
	fmt.Printf("  put %-10s -> %s\n", key, ghost.Message(ghost.OpPut, err))
	return s, nil
}

func main() {
	log.SetFlags(0)
	ctx := context.Background()

	// One node is a complete cache. With Config.PeersFile naming a shared
	// node list, the same code runs on every server of a cluster.
	cache, err := ghost.Join(ctx, ghost.Config{Addr: "127.0.0.1:0"})
	if err != nil {
		log.Fatal(err)
	}
	defer cache.Close()
	fmt.Printf("GhostDB node on %s; the database takes 200ms a query.\n\n", cache.Addr())

	db := database{delay: 200 * time.Millisecond}
	for _, ticker := range []string{"AMZN", "AMZN", "GOOG", "AMZN", "GOOG"} {
		start := time.Now()
		s, err := getStockData(ctx, cache, db, ticker)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%s %.2f in %v\n\n", s.Ticker, s.Price, time.Since(start).Round(10*time.Microsecond))
	}
}
