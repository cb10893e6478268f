package api

import (
	"strings"
)

// handler serves one route; a returned error is mapped by toError.
type handler func(c *call) error

// route is one method and path pattern; "{name}" segments capture.
type route struct {
	Method  string
	Pattern string
	roles   []string // nil: no authentication
	h       handler
	segs    []string
	class   class // how it is admitted under load
	// streamsBody: the handler reads the body as it comes (RequestBodyStream), however large;
	// every other handler gets it whole, at most Config.MaxBody bytes.
	streamsBody bool
}

type router struct {
	routes []*route
}

func (r *router) add(method, pattern string, roles []string, h handler) *route {
	rt := &route{Method: method, Pattern: pattern, roles: roles, h: h,
		segs: strings.Split(strings.Trim(pattern, "/"), "/"), class: starting}
	if roles == nil {
		rt.class = unmetered
	}
	r.routes = append(r.routes, rt)
	return rt
}

// match finds the route for a request. When the path matches but not the method, it returns
// nil and the methods that would match (for 405).
func (r *router) match(method, path string) (*route, []string, []string) {
	segs := strings.Split(strings.Trim(path, "/"), "/")
	var allowed []string
	for _, rt := range r.routes {
		params, ok := rt.matchPath(segs)
		if !ok {
			continue
		}
		if rt.Method == method {
			return rt, params, nil
		}
		allowed = append(allowed, rt.Method)
	}
	return nil, nil, allowed
}

func (rt *route) matchPath(segs []string) ([]string, bool) {
	if len(segs) != len(rt.segs) {
		return nil, false
	}
	var params []string
	for i, s := range rt.segs {
		if strings.HasPrefix(s, "{") {
			if segs[i] == "" {
				return nil, false
			}
			params = append(params, s[1:len(s)-1], segs[i])
			continue
		}
		if s != segs[i] {
			return nil, false
		}
	}
	return params, true
}
