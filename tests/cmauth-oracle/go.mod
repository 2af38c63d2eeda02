module chartgate.test/cmauth-oracle

go 1.24

require github.com/chartmuseum/auth v0.6.0

require (
	github.com/golang-jwt/jwt/v4 v4.5.2 // indirect
	github.com/jmespath/go-jmespath v0.4.0 // indirect
	github.com/pkg/errors v0.9.1 // indirect
)
