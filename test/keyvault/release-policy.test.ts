import test from 'ava';
import fc from 'fast-check';
import { ReleasePolicyParseError } from '../../src/errors.js';
import {
  evaluateReleasePolicy,
  lookupClaim,
  parseReleasePolicy,
  parseReleasePolicyData,
  releasePolicyJson,
  type ReleasePolicy,
} from '../../src/keyvault/release-policy.js';

const MAA = 'https://sharedeus.eus.attest.azure.net';
const CLAIMS = {
  iss: MAA,
  'x-ms-attestation-type': 'sevsnpvm',
  'x-ms-compliance-status': 'azure-compliant-cvm',
  'x-ms-sevsnpvm-is-debuggable': false,
  'x-ms-sevsnpvm-guestsvn': 7,
  'x-ms-isolation-tee': { 'x-ms-attestation-type': 'sevsnpvm', nested: { deep: 'yes' } },
  'x-ms-runtime': { keys: [{ kid: 'k' }] },
};

function policy(conditions: unknown[], kind: 'allOf' | 'anyOf' = 'allOf', authority = MAA): ReleasePolicy {
  return parseReleasePolicy({ version: '1.0.0', anyOf: [{ authority, [kind]: conditions }] });
}

function allowed(conditions: unknown[], claims: Record<string, unknown> = CLAIMS): boolean {
  return evaluateReleasePolicy(policy(conditions), claims).allowed;
}

test('each operator, compared as strings, ordered numerically when both sides are numbers', (t) => {
  const c = (claim: string, op: string, value: unknown) => [{ claim, [op]: value }];
  t.true(allowed(c('x-ms-attestation-type', 'equals', 'sevsnpvm')));
  t.false(allowed(c('x-ms-attestation-type', 'equals', 'SEVSNPVM')), 'equality is case-sensitive');
  t.true(allowed(c('x-ms-attestation-type', 'notEquals', 'azurevm')));
  t.false(allowed(c('x-ms-attestation-type', 'notEquals', 'sevsnpvm')));
  t.true(allowed(c('x-ms-sevsnpvm-is-debuggable', 'equals', 'false')), 'boolean claim matches "false"');
  t.true(allowed(c('x-ms-sevsnpvm-is-debuggable', 'equals', false)));
  t.true(allowed(c('x-ms-sevsnpvm-guestsvn', 'equals', '7')));
  t.true(allowed(c('x-ms-sevsnpvm-guestsvn', 'greater', 6)));
  t.false(allowed(c('x-ms-sevsnpvm-guestsvn', 'greater', 7)));
  t.true(allowed(c('x-ms-sevsnpvm-guestsvn', 'greaterOrEquals', 7)));
  t.true(allowed(c('x-ms-sevsnpvm-guestsvn', 'less', 10)), '7 < 10 numerically, not as text');
  t.false(allowed(c('x-ms-sevsnpvm-guestsvn', 'less', 7)));
  t.true(allowed(c('x-ms-sevsnpvm-guestsvn', 'lessOrEquals', '7')));
  t.true(allowed(c('x-ms-attestation-type', 'less', 'tdxvm')), 'ordinal string order');
  t.true(allowed(c('x-ms-attestation-type', 'exists', true)));
  t.false(allowed(c('missing', 'exists', true)));
  t.true(allowed(c('missing', 'exists', false)));
});

test('ordering operators deny on a type mismatch instead of comparing as strings ("zzz" greater 5)', (t) => {
  const claims = { ...CLAIMS, text: 'zzz', flag: true };
  for (const op of ['less', 'lessOrEquals', 'greater', 'greaterOrEquals']) {
    for (const [claim, value] of [
      ['text', 5],
      ['x-ms-sevsnpvm-guestsvn', 'abc'],
      ['flag', 0],
      ['flag', false],
      ['text', true],
    ] as const) {
      const r = evaluateReleasePolicy(policy([{ claim, [op]: value }]), claims);
      t.false(r.allowed, `${claim} ${op} ${JSON.stringify(value)}`);
      t.regex(r.clauses[1]!.reason, /types differ|booleans have no order/);
    }
  }
  const r = evaluateReleasePolicy(policy([{ claim: 'text', greater: 5 }]), claims);
  t.is(r.clauses[1]!.reason, 'types differ: the claim is a string and the policy value a number; greater needs two numbers or two texts');
  // equals keeps the observed string semantics across types; ordering still works within a type
  t.true(allowed([{ claim: 'flag', equals: 'true' }], claims));
  t.true(allowed([{ claim: 'text', greater: 'aaa' }], claims));
  t.true(allowed([{ claim: 'x-ms-sevsnpvm-guestsvn', greater: '6' }], claims), 'a decimal string is a number');
});

test('missing claims, objects and arrays make a comparison false', (t) => {
  for (const op of ['equals', 'notEquals', 'less', 'lessOrEquals', 'greater', 'greaterOrEquals']) {
    t.false(allowed([{ claim: 'missing', [op]: 'x' }]), op);
    t.false(allowed([{ claim: 'x-ms-isolation-tee', [op]: 'x' }]), `${op} on an object`);
  }
  t.false(allowed([{ claim: 'x-ms-runtime.keys.0.kid', equals: 'k' }]), 'arrays are not addressable');
  const r = evaluateReleasePolicy(policy([{ claim: 'x-ms-runtime.keys.0.kid', equals: 'k' }]), CLAIMS);
  t.regex(r.clauses[1]!.reason, /array/);
});

test('dotted claims walk into objects', (t) => {
  t.true(allowed([{ claim: 'x-ms-isolation-tee.x-ms-attestation-type', equals: 'sevsnpvm' }]));
  t.true(allowed([{ claim: 'x-ms-isolation-tee.nested.deep', equals: 'yes' }]));
  t.false(allowed([{ claim: 'x-ms-isolation-tee.nested.other', exists: true }]));
  t.deepEqual(lookupClaim({ 'a.b': 1 }, 'a.b'), { found: true, value: 1 }, 'a literal dotted name wins');
});

test('anyOf/allOf nest; clause results name paths and reasons', (t) => {
  const p = policy([
    { claim: 'x-ms-attestation-type', equals: 'sevsnpvm' },
    {
      anyOf: [
        { claim: 'x-ms-compliance-status', equals: 'azure-compliant-uvm' },
        {
          allOf: [
            { claim: 'x-ms-sevsnpvm-guestsvn', greaterOrEquals: 5 },
            { claim: 'missing', exists: false },
          ],
        },
      ],
    },
  ]);
  const r = evaluateReleasePolicy(p, CLAIMS);
  t.true(r.allowed);
  t.deepEqual(
    r.clauses.map((c) => [c.path, c.kind, c.passed]),
    [
      ['$.anyOf[0]', 'authority', true],
      ['$.anyOf[0].allOf[0]', 'claim', true],
      ['$.anyOf[0].allOf[1]', 'anyOf', true],
      ['$.anyOf[0].allOf[1].anyOf[0]', 'claim', false],
      ['$.anyOf[0].allOf[1].anyOf[1]', 'allOf', true],
      ['$.anyOf[0].allOf[1].anyOf[1].allOf[0]', 'claim', true],
      ['$.anyOf[0].allOf[1].anyOf[1].allOf[1]', 'claim', true],
    ],
  );
  const failing = evaluateReleasePolicy(p, { ...CLAIMS, 'x-ms-sevsnpvm-guestsvn': 4 });
  t.false(failing.allowed);
  const leaf = failing.clauses.find((c) => c.path === '$.anyOf[0].allOf[1].anyOf[1].allOf[0]')!;
  t.is(leaf.actual, '4');
  t.regex(leaf.reason, /does not satisfy greaterOrEquals "5"/);
});

test('the authority must be the token issuer, trailing slash ignored', (t) => {
  const conds = [{ claim: 'x-ms-attestation-type', equals: 'sevsnpvm' }];
  t.true(evaluateReleasePolicy(policy(conds, 'allOf', `${MAA}/`), CLAIMS).allowed);
  t.true(evaluateReleasePolicy(policy(conds), { ...CLAIMS, iss: `${MAA}/` }).allowed);
  const wrong = evaluateReleasePolicy(policy(conds, 'allOf', 'https://other.attest.azure.net'), CLAIMS);
  t.false(wrong.allowed);
  t.regex(wrong.clauses[0]!.reason, /is not https:\/\/other/);
  t.false(evaluateReleasePolicy(policy(conds), { ...CLAIMS, iss: undefined }).allowed);
  const two = parseReleasePolicy({
    version: '1.0.0',
    anyOf: [
      { authority: 'https://other.attest.azure.net', allOf: conds },
      { authority: MAA, anyOf: conds },
    ],
  });
  t.true(evaluateReleasePolicy(two, CLAIMS).allowed, 'any authority may match');
});

test('the parser refuses what is outside the grammar, with the path', (t) => {
  const bad: [unknown, RegExp][] = [
    ['{', /not valid JSON/],
    [[], /JSON object/],
    [{ version: '2.0', anyOf: [] }, /version/],
    [{ version: '1.0.0' }, /anyOf/],
    [{ version: '1.0.0', anyOf: [] }, /at least one/],
    [{ version: '1.0.0', anyOf: [{ allOf: [{ claim: 'a', equals: 'b' }] }] }, /authority/],
    [{ version: '1.0.0', anyOf: [{ authority: 'not a url', allOf: [{ claim: 'a', equals: 'b' }] }] }, /URL/],
    [{ version: '1.0.0', anyOf: [{ authority: MAA }] }, /anyOf" or "allOf/],
    [{ version: '1.0.0', anyOf: [{ authority: MAA, allOf: [{ claim: 'a' }] }] }, /exactly one operator/],
    [
      { version: '1.0.0', anyOf: [{ authority: MAA, allOf: [{ claim: 'a', equals: 'b', less: 'c' }] }] },
      /exactly one/,
    ],
    [
      { version: '1.0.0', anyOf: [{ authority: MAA, allOf: [{ claim: 'a', matches: 'b' }] }] },
      /unknown property/,
    ],
    [
      { version: '1.0.0', anyOf: [{ authority: MAA, allOf: [{ claim: 'a', equals: {} }] }] },
      /string, number or boolean/,
    ],
    [
      { version: '1.0.0', anyOf: [{ authority: MAA, allOf: [{ claim: 'a', exists: 'maybe' }] }] },
      /true or false/,
    ],
    [{ version: '1.0.0', anyOf: [{ authority: MAA, allOf: [], anyOf: [] }] }, /not both/],
    [{ version: '1.0.0', anyOf: [{ authority: MAA, allOf: [{ anyOf: [] }] }] }, /at least one/],
  ];
  for (const [input, message] of bad) {
    const err = t.throws(
      () => parseReleasePolicy(typeof input === 'string' ? input : JSON.stringify(input)),
      {
        instanceOf: ReleasePolicyParseError,
      },
    );
    t.regex(err.message, message, JSON.stringify(input));
    t.is(err.code, 'ERR_RELEASE_POLICY_PARSE');
    t.true(err.path.startsWith('$'));
  }
  let deep: unknown = { claim: 'a', equals: 'b' };
  for (let i = 0; i < 40; i++) deep = { anyOf: [deep] };
  t.throws(() => parseReleasePolicy({ version: '1.0.0', anyOf: [{ authority: MAA, allOf: [deep] }] }), {
    message: /deeper/,
  });
  t.throws(() => parseReleasePolicyData('not base64url!'), { instanceOf: ReleasePolicyParseError });
});

test('property names match case-insensitively, as in the documented grammar', (t) => {
  const p = parseReleasePolicy({
    version: '1.0.0',
    anyof: [{ authority: MAA, allof: [{ claim: 'x-ms-attestation-type', Equals: 'sevsnpvm' }] }],
  });
  t.true(evaluateReleasePolicy(p, CLAIMS).allowed);
});

test('fuzz: the parser only ever throws ReleasePolicyParseError and the evaluator never throws', (t) => {
  const leaf = fc.record({
    claim: fc.constantFrom('x-ms-attestation-type', 'x-ms-sevsnpvm-guestsvn', 'a.b', 'missing'),
    op: fc.constantFrom(
      'equals',
      'notEquals',
      'less',
      'lessOrEquals',
      'greater',
      'greaterOrEquals',
      'exists',
      'bogus',
    ),
    value: fc.oneof(fc.string(), fc.integer(), fc.boolean(), fc.constant(null)),
  });
  const cond = fc.letrec((tie) => ({
    node: fc.oneof(
      { depthSize: 'small' },
      leaf.map(({ claim, op, value }) => ({ claim, [op]: value })),
      fc.array(tie('node'), { maxLength: 3 }).map((xs) => ({ anyOf: xs })),
      fc.array(tie('node'), { maxLength: 3 }).map((xs) => ({ allOf: xs })),
      fc.anything(),
    ),
  }));
  fc.assert(
    fc.property(cond.node, fc.anything(), (node, claims) => {
      let parsed: ReleasePolicy;
      try {
        parsed = parseReleasePolicy({ version: '1.0.0', anyOf: [{ authority: MAA, allOf: [node] }] });
      } catch (e) {
        return e instanceof ReleasePolicyParseError;
      }
      const c = typeof claims === 'object' && claims !== null ? (claims as Record<string, unknown>) : {};
      evaluateReleasePolicy(parsed, c);
      return true;
    }),
    { numRuns: 500 },
  );
  fc.assert(
    fc.property(fc.string(), (s) => {
      try {
        parseReleasePolicy(s);
        return true;
      } catch (e) {
        return e instanceof ReleasePolicyParseError;
      }
    }),
  );
  t.pass();
});

// A Managed HSM accepted this policy (version "1.0", the `condition`/`value` spelling) and wrote it back as
// {"anyOf":[{"anyOf":[{"claim":"sdk-test","equals":"true"}],"authority":...}],"version":"1.0.0"}: Azure/azure-sdk-for-js
// @3357deb7, sdk/keyvault/keyvault-keys/recordings/node/keys_client__create_read_update_and_delete_operations_for_managed_hsm_releasekey/
// recording_can_import_an_exportable_key_and_release_it.js (the create request and its 200 answer).
const RECORDED_OLD_SPELLING = {
  anyOf: [
    {
      anyOf: [{ claim: 'sdk-test', condition: 'equals', value: 'true' }],
      authority: 'https://skrattestation.azurewebsites.net/',
    },
  ],
  version: '1.0',
};
const RECORDED_MHSM_WRITTEN_BACK =
  '{"anyOf":[{"anyOf":[{"claim":"sdk-test","equals":"true"}],"authority":"https://skrattestation.azurewebsites.net/"}],"version":"1.0.0"}';

test('the older spellings a real Managed HSM accepted (version "1.0", condition/value) parse to the current form, written back as it wrote them', (t) => {
  const parsed = parseReleasePolicy(RECORDED_OLD_SPELLING);
  t.is(parsed.version, '1.0.0');
  t.deepEqual(parsed.authorities[0]!.conditions, [{ kind: 'claim', claim: 'sdk-test', operator: 'equals', value: 'true' }]);
  t.is(releasePolicyJson(parsed, 'sorted'), RECORDED_MHSM_WRITTEN_BACK);
  t.is(releasePolicyJson(parseReleasePolicy(RECORDED_MHSM_WRITTEN_BACK), 'sorted'), RECORDED_MHSM_WRITTEN_BACK);
  t.true(evaluateReleasePolicy(parsed, { iss: 'https://skrattestation.azurewebsites.net', 'sdk-test': 'true' }).allowed);
  // Only a known operator, with a value, and not mixed with the current spelling.
  for (const [condition, message] of [
    [{ claim: 'c', condition: 'matches', value: 'x' }, /"condition" must name an operator/],
    [{ claim: 'c', condition: 'equals' }, /needs a "value"/],
    [{ claim: 'c', condition: 'equals', value: 'x', equals: 'x' }, /unknown property "equals"/],
  ] as const) {
    t.throws(() => policy([condition]), { instanceOf: ReleasePolicyParseError, message }, JSON.stringify(condition));
  }
});

test('a regular vault writes a policy back with version first and each name before its conditions, as in its real answers', (t) => {
  // test/fixtures/real-release/kv2022-create-release.jws: the policy the SDK sent as
  // {"anyOf":[{"allOf":[...],"authority":...}],"version":"1.0.0"} comes back in this order.
  const sent = '{"anyOf":[{"allOf":[{"claim":"sdk-test","equals":"true"}],"authority":"https://timovkeyvaultsite.azurewebsites.net/"}],"version":"1.0.0"}';
  t.is(
    releasePolicyJson(parseReleasePolicy(sent)),
    '{"version":"1.0.0","anyOf":[{"authority":"https://timovkeyvaultsite.azurewebsites.net/","allOf":[{"claim":"sdk-test","equals":"true"}]}]}',
  );
});
