/** AMD EPYC generations that run SEV-SNP and have their own AMD root key. */
export type SnpProduct = 'Milan' | 'Genoa' | 'Turin';

export const SNP_PRODUCTS: readonly SnpProduct[] = ['Milan', 'Genoa', 'Turin'];

/** The security version numbers packed into a TCB_VERSION u64; `fmc` exists only on Turin. */
export interface TcbVersion {
  bootloader: number;
  tee: number;
  snp: number;
  microcode: number;
  fmc?: number;
  /** The u64 as in the report. */
  raw: bigint;
}

export type TcbComponent = 'bootloader' | 'tee' | 'snp' | 'microcode' | 'fmc';

/**
 * Decodes a TCB_VERSION. Milan and Genoa pack `[bl, tee, 0, 0, 0, 0, snp, ucode]`; Turin packs
 * `[fmc, bl, tee, snp, 0, 0, 0, ucode]`. An unknown product uses the Milan/Genoa layout: only
 * version-2 reports lack cpuid, and those come from pre-Turin firmware.
 */
export function decodeTcb(raw: bigint, product: SnpProduct | undefined): TcbVersion {
  // Two BigInt operations and no closures: report parsing is on the warm verification path.
  const lo = Number(raw & 0xffffffffn);
  const hi = Number((raw >> 32n) & 0xffffffffn);
  if (product === 'Turin') {
    return {
      fmc: lo & 0xff,
      bootloader: (lo >>> 8) & 0xff,
      tee: (lo >>> 16) & 0xff,
      snp: lo >>> 24,
      microcode: hi >>> 24,
      raw,
    };
  }
  return {
    bootloader: lo & 0xff,
    tee: (lo >>> 8) & 0xff,
    snp: (hi >>> 16) & 0xff,
    microcode: hi >>> 24,
    raw,
  };
}

/** Packs TCB components into the u64 layout of `product`. */
export function encodeTcb(tcb: Omit<TcbVersion, 'raw'>, product: SnpProduct): bigint {
  const at = (value: number, i: number): bigint => BigInt(value & 0xff) << BigInt(i * 8);
  if (product === 'Turin') {
    return (
      at(tcb.fmc ?? 0, 0) | at(tcb.bootloader, 1) | at(tcb.tee, 2) | at(tcb.snp, 3) | at(tcb.microcode, 7)
    );
  }
  return at(tcb.bootloader, 0) | at(tcb.tee, 1) | at(tcb.snp, 6) | at(tcb.microcode, 7);
}

/** The components that matter for a product's TCB (Turin adds fmc). */
export function tcbComponents(product: SnpProduct | undefined): TcbComponent[] {
  return product === 'Turin'
    ? ['fmc', 'bootloader', 'tee', 'snp', 'microcode']
    : ['bootloader', 'tee', 'snp', 'microcode'];
}

/** Product from the report's cpuid (version >= 3). Undefined when the family/model is not one we know. */
export function productFromCpuid(family: number, model: number): SnpProduct | undefined {
  if (family === 0x19) {
    if (model <= 0x0f) return 'Milan';
    if ((model >= 0x10 && model <= 0x1f) || (model >= 0xa0 && model <= 0xaf)) return 'Genoa';
    return undefined;
  }
  if (family === 0x1a) return 'Turin';
  return undefined;
}

/** Product from a VCEK product-name extension such as `Milan-B0`, or a bare name. */
export function productFromName(name: string): SnpProduct | undefined {
  const base = name.split('-')[0]?.toLowerCase();
  return SNP_PRODUCTS.find((p) => p.toLowerCase() === base);
}
