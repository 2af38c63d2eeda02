// cmauth-oracle answers authorization questions with the real
// github.com/chartmuseum/auth library, configured the way ChartMuseum v0.16.5
// configures it in bearer mode (router.go NewRouter: Realm, Service,
// PublicKeyPath, default actions search path).
//
// It is test tooling for chartgate, not part of the product: it lets the Rust
// tests ask the code ChartMuseum actually runs whether a token chartgate
// minted is accepted, and which challenge bytes ChartMuseum would send.
//
// Protocol: one JSON object per stdin line, {"auth": "<Authorization header
// value>", "action": "pull"|"push", "namespace": "<repo or empty>"}; one JSON
// object per stdout line, {"allowed": bool, "www_authenticate": "...",
// "error": "..."}.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"os"

	cmauth "github.com/chartmuseum/auth"
)

type question struct {
	Auth      string `json:"auth"`
	Action    string `json:"action"`
	Namespace string `json:"namespace"`
}

type answer struct {
	Allowed         bool   `json:"allowed"`
	WWWAuthenticate string `json:"www_authenticate,omitempty"`
	Error           string `json:"error,omitempty"`
}

func main() {
	realm := flag.String("realm", "", "auth realm (ChartMuseum --auth-realm)")
	service := flag.String("service", "", "auth service (ChartMuseum --auth-service)")
	cert := flag.String("cert", "", "public key or certificate PEM (ChartMuseum --auth-cert-path)")
	flag.Parse()

	authorizer, err := cmauth.NewAuthorizer(&cmauth.AuthorizerOptions{
		Realm:         *realm,
		Service:       *service,
		PublicKeyPath: *cert,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "cmauth-oracle:", err)
		os.Exit(2)
	}

	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<20)
	out := json.NewEncoder(os.Stdout)
	for in.Scan() {
		var q question
		if err := json.Unmarshal(in.Bytes(), &q); err != nil {
			fmt.Fprintln(os.Stderr, "cmauth-oracle: bad question:", err)
			os.Exit(2)
		}
		out.Encode(ask(authorizer, q))
	}
}

// ask mirrors ChartMuseum's rootHandler: an authorizer error is a 500, a
// panic inside the library (a token without an access claim) is recovered
// the way gin.Recovery would turn it into a 500.
func ask(a *cmauth.Authorizer, q question) (ans answer) {
	defer func() {
		if r := recover(); r != nil {
			ans = answer{Error: fmt.Sprint("panic: ", r)}
		}
	}()
	p, err := a.Authorize(q.Auth, q.Action, q.Namespace)
	if err != nil {
		return answer{Error: err.Error()}
	}
	return answer{Allowed: p.Allowed, WWWAuthenticate: p.WWWAuthenticateHeader}
}
