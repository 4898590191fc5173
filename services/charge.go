package services

import "context"

type chargeCtx struct{}

// WithCharge returns ctx carrying charge, the function that bills the tokens the
// request generates to whoever made it (an API key's token bucket). The service that
// commits a request's tokens calls it through Charge as they arrive, so a request
// that fails after generating is billed all the same.
func WithCharge(ctx context.Context, charge func(tokens int)) context.Context {
	return context.WithValue(ctx, chargeCtx{}, charge)
}

// Charge bills tokens generated for the request of ctx to the function WithCharge
// put there; without one it does nothing.
func Charge(ctx context.Context, tokens int) {
	if f, _ := ctx.Value(chargeCtx{}).(func(int)); f != nil && tokens > 0 {
		f(tokens)
	}
}
