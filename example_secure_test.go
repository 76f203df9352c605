package ghost_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log"
	"net/http"
	"strings"

	"github.com/ghostdb/ghost"
)

// A closed node: peers need the secret, HTTP clients the token. The
// gateway speaks HTTPS with the cluster's own CA, which ClusterCA exports
// for clients such as curl (--cacert).
func ExampleNode_ClusterCA() {
	ctx := context.Background()
	node, err := ghost.Join(ctx, ghost.Config{
		Addr:      "127.0.0.1:0",
		SecretKey: []byte("an example secret of 32 bytes!!!"), // random bytes in production
		HTTPToken: "example-token",
	})
	if err != nil {
		log.Fatal(err)
	}
	defer node.Close()
	if err := node.Put(ctx, "greeting", "hello", ghost.NoExpiry); err != nil {
		log.Fatal(err)
	}

	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(node.ClusterCA())
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	for _, token := range []string{"", "example-token"} {
		req, _ := http.NewRequest("POST", "https://"+node.Addr()+"/get", strings.NewReader(`{"Gobj":{"Key":"greeting"}}`))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := hc.Do(req)
		if err != nil {
			log.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Println(resp.StatusCode, strings.Contains(string(body), "hello"))
	}
	// Output:
	// 401 false
	// 200 true
}
