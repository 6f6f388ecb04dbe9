import test from 'ava';
import { policyBytes } from '../../helpers/vault-issuer.js';
import { startVaultWithIssuer } from '../../helpers/vault-setup.js';

test('the emulated vault denies an ordering condition whose claim and value types differ ("zzz" greater 5)', async (t) => {
  const { emu, issuer } = await startVaultWithIssuer(t);
  const client = emu.keyClient();
  const create = (name: string, condition: unknown) =>
    client.createRsaKey(name, {
      hsm: true,
      exportable: true,
      releasePolicy: { encodedPolicy: policyBytes(issuer.url, [condition]) },
    });
  await create('text-vs-number', { claim: 'x-ms-attestation-type', greater: 5 });
  await create('number-vs-number', { claim: 'x-ms-sevsnpvm-guestsvn', greater: 5 });
  const error = await t.throwsAsync(client.releaseKey('text-vs-number', await issuer.token()));
  t.is((error as unknown as { statusCode?: number }).statusCode, 403);
  const decision = emu.releaseDecisions().at(-1)!;
  t.false(decision.allowed);
  const leaf = decision.evaluation!.clauses.find((c) => c.kind === 'claim')!;
  t.regex(leaf.reason, /^types differ: the claim is a string and the policy value a number/);
  t.truthy((await client.releaseKey('number-vs-number', await issuer.token())).value);
});
